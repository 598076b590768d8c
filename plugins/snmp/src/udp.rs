//! [`Transport`] over WASI UDP (`wasi:sockets/udp`): a socket bound to an
//! ephemeral local port and connected to the agent, with receive timeouts from
//! `wasi:io/poll` over the datagram stream and a clock.
//!
//! Why not `std::net::UdpSocket`: its receive timeout depends on socket options
//! the WASI libc may not honour, and a request that never times out is exactly
//! the hang a wrong community must not cause. A clock pollable cannot be ignored.

use std::net::SocketAddr;
use std::time::Duration;

use wasip2::clocks::monotonic_clock;
use wasip2::io::poll::poll;
use wasip2::sockets::instance_network::instance_network;
use wasip2::sockets::network::{
    ErrorCode, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress,
};
use wasip2::sockets::udp::{
    IncomingDatagramStream, OutgoingDatagram, OutgoingDatagramStream, UdpSocket,
};
use wasip2::sockets::udp_create_socket::create_udp_socket;

use crate::transport::{Transport, TransportError};

/// A UDP socket connected to one agent. Field order is drop order: the streams
/// are children of the socket and must go first.
pub struct WasiUdp {
    incoming: IncomingDatagramStream,
    outgoing: OutgoingDatagramStream,
    _socket: UdpSocket,
    peer: String,
}

impl WasiUdp {
    /// Bind an ephemeral port and connect it to `peer`.
    pub fn connect(peer: SocketAddr) -> Result<Self, TransportError> {
        let name = peer.to_string();
        let err = |e: ErrorCode| map_error(e, &name);
        let (family, local) = match peer {
            SocketAddr::V4(_) => (
                IpAddressFamily::Ipv4,
                IpSocketAddress::Ipv4(Ipv4SocketAddress { port: 0, address: (0, 0, 0, 0) }),
            ),
            SocketAddr::V6(_) => (
                IpAddressFamily::Ipv6,
                IpSocketAddress::Ipv6(Ipv6SocketAddress {
                    port: 0,
                    flow_info: 0,
                    address: (0, 0, 0, 0, 0, 0, 0, 0),
                    scope_id: 0,
                }),
            ),
        };
        let socket = create_udp_socket(family).map_err(err)?;
        let network = instance_network();
        socket.start_bind(&network, local).map_err(err)?;
        loop {
            match socket.finish_bind() {
                Ok(()) => break,
                Err(ErrorCode::WouldBlock) => socket.subscribe().block(),
                Err(e) => return Err(err(e)),
            }
        }
        let (incoming, outgoing) = socket.stream(Some(to_wasi(peer))).map_err(err)?;
        Ok(WasiUdp { incoming, outgoing, _socket: socket, peer: name })
    }
}

impl Transport for WasiUdp {
    fn send(&mut self, datagram: &[u8]) -> Result<(), TransportError> {
        let err = |e: ErrorCode| map_error(e, &self.peer);
        loop {
            if self.outgoing.check_send().map_err(err)? > 0 {
                break;
            }
            self.outgoing.subscribe().block();
        }
        self.outgoing
            .send(&[OutgoingDatagram { data: datagram.to_vec(), remote_address: None }])
            .map_err(err)?;
        Ok(())
    }

    fn recv(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, TransportError> {
        let timeout_ns = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        let deadline = monotonic_clock::now().saturating_add(timeout_ns);
        loop {
            let mut got = self.incoming.receive(1).map_err(|e| map_error(e, &self.peer))?;
            if let Some(d) = got.pop() {
                return Ok(Some(d.data));
            }
            if monotonic_clock::now() >= deadline {
                return Ok(None);
            }
            let readable = self.incoming.subscribe();
            let timer = monotonic_clock::subscribe_instant(deadline);
            poll(&[&readable, &timer]);
        }
    }
}

fn map_error(e: ErrorCode, peer: &str) -> TransportError {
    match e {
        ErrorCode::AccessDenied => TransportError::Denied(peer.to_string()),
        ErrorCode::ConnectionRefused => TransportError::Refused(peer.to_string()),
        other => TransportError::Other(format!("{peer}: {other}")),
    }
}

fn to_wasi(addr: SocketAddr) -> IpSocketAddress {
    match addr {
        SocketAddr::V4(a) => {
            let [x, y, z, w] = a.ip().octets();
            IpSocketAddress::Ipv4(Ipv4SocketAddress { port: a.port(), address: (x, y, z, w) })
        }
        SocketAddr::V6(a) => {
            let s = a.ip().segments();
            IpSocketAddress::Ipv6(Ipv6SocketAddress {
                port: a.port(),
                flow_info: 0,
                address: (s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
                scope_id: a.scope_id(),
            })
        }
    }
}
