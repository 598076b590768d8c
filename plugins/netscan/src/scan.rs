//! The TCP connect scanner: many non-blocking connects in flight at once,
//! multiplexed with `wasi:io/poll` over the sockets' pollables and one clock
//! pollable for the earliest deadline.
//!
//! Why WASI sockets directly rather than `std::net`: std's
//! `TcpStream::connect_timeout` blocks on one connection at a time, so a scan of
//! 16 addresses × 1000 ports would take as long as its slowest connections in a
//! row. `wasi:sockets/tcp` splits a connect into `start-connect` and
//! `finish-connect` with a pollable in between, which is exactly what a bounded
//! pool of concurrent connects needs, with no thread and no async runtime.
//!
//! Each probe ends in one [`PortState`]: accepted → open; refused or reset →
//! closed; no answer before the timeout, or unreachable → filtered. A connect the
//! host refuses (`access-denied`: the address is outside the part's grant) ends
//! the whole scan with an error, because every later result would be a lie.

use std::net::IpAddr;
use std::time::Duration;

use wasip2::clocks::monotonic_clock;
use wasip2::io::poll::{Pollable, poll};
use wasip2::sockets::instance_network::instance_network;
use wasip2::sockets::network::{
    ErrorCode, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress, Network,
};
use wasip2::sockets::tcp::TcpSocket;
use wasip2::sockets::tcp_create_socket::create_tcp_socket;

use crate::report::PortState;

/// How a scan is run.
#[derive(Debug, Clone, Copy)]
pub struct ScanConfig {
    /// Wait for one connection before the port counts as filtered.
    pub timeout: Duration,
    /// Connections in flight at once (at least 1).
    pub concurrency: usize,
}

/// How a scan ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Every probe has a result.
    Complete,
    /// The host asked to stop: probes after the first unstarted one have none.
    Stopped,
}

/// One connection in flight. Field order matters: a pollable is a child of its
/// socket and must be dropped first, which Rust does in declaration order.
struct InFlight {
    pollable: Pollable,
    socket: TcpSocket,
    probe: usize,
    deadline: u64,
}

/// Run `probes` connection attempts; `target(i)` gives the address and port of
/// probe `i`, `done(i, state)` receives each result (in completion order), and
/// `stop()` is polled between rounds.
pub fn scan(
    probes: usize, target: impl Fn(usize) -> (IpAddr, u16), config: ScanConfig,
    mut done: impl FnMut(usize, PortState), stop: impl Fn() -> bool,
) -> Result<Ended, String> {
    let network = instance_network();
    let timeout_ns = u64::try_from(config.timeout.as_nanos()).unwrap_or(u64::MAX);
    let mut limit = config.concurrency.max(1);
    let mut in_flight: Vec<InFlight> = Vec::with_capacity(limit);
    let mut next = 0;
    let mut stopped = false;
    loop {
        if !stopped && stop() {
            stopped = true;
        }
        // 1. Start connections until the pool is full.
        while !stopped && next < probes && in_flight.len() < limit {
            let (addr, port) = target(next);
            match start_connect(&network, addr, port) {
                Ok(socket) => {
                    in_flight.push(InFlight {
                        pollable: socket.subscribe(),
                        socket,
                        probe: next,
                        deadline: monotonic_clock::now().saturating_add(timeout_ns),
                    });
                    next += 1;
                }
                Err(ErrorCode::AccessDenied) => return Err(denied(addr, port)),
                // The host is out of sockets: keep the pool at what it holds now
                // and retry this probe when one ends.
                Err(ErrorCode::NewSocketLimit | ErrorCode::OutOfMemory)
                    if !in_flight.is_empty() =>
                {
                    limit = in_flight.len();
                    break;
                }
                Err(e) => match classify(e) {
                    Some(state) => {
                        done(next, state);
                        next += 1;
                    }
                    None => return Err(format!("cannot connect to {addr} port {port}: {e}")),
                },
            }
        }
        if in_flight.is_empty() {
            if stopped || next >= probes {
                break;
            }
            continue;
        }
        // 2. Wait until a connection settles or the earliest deadline passes.
        let earliest = in_flight.iter().map(|f| f.deadline).min().expect("non-empty");
        let timer = monotonic_clock::subscribe_instant(earliest);
        let ready = {
            let mut list: Vec<&Pollable> = in_flight.iter().map(|f| &f.pollable).collect();
            list.push(&timer);
            poll(&list)
        };
        drop(timer);
        let mut is_ready = vec![false; in_flight.len()];
        for i in ready {
            if let Some(r) = is_ready.get_mut(i as usize) {
                *r = true;
            }
        }
        // 3. Settle what is ready or late, from the back so swap_remove keeps
        //    the indices still to visit valid.
        let now = monotonic_clock::now();
        for i in (0..in_flight.len()).rev() {
            let state = if is_ready[i] {
                match in_flight[i].socket.finish_connect() {
                    Ok((input, output)) => {
                        // The streams are children of the socket: drop them first.
                        drop(input);
                        drop(output);
                        Some(PortState::Open)
                    }
                    Err(ErrorCode::WouldBlock) => None,
                    Err(ErrorCode::AccessDenied) => {
                        let (addr, port) = target(in_flight[i].probe);
                        return Err(denied(addr, port));
                    }
                    Err(e) => Some(classify(e).unwrap_or(PortState::Filtered)),
                }
            } else {
                None
            };
            let state = state.or((in_flight[i].deadline <= now).then_some(PortState::Filtered));
            if let Some(state) = state {
                let f = in_flight.swap_remove(i);
                done(f.probe, state);
            }
        }
    }
    Ok(if next >= probes { Ended::Complete } else { Ended::Stopped })
}

fn denied(addr: IpAddr, port: u16) -> String {
    format!(
        "the host does not allow connecting to {addr} port {port}: the part's targets must be granted to the execution (jobstack exec --allow-net)"
    )
}

/// The port state an error of `start-connect` or `finish-connect` means, or
/// `None` when it says nothing about the remote port (a local fault).
fn classify(e: ErrorCode) -> Option<PortState> {
    match e {
        ErrorCode::ConnectionRefused
        | ErrorCode::ConnectionReset
        | ErrorCode::ConnectionAborted => Some(PortState::Closed),
        ErrorCode::Timeout | ErrorCode::RemoteUnreachable => Some(PortState::Filtered),
        _ => None,
    }
}

fn start_connect(network: &Network, addr: IpAddr, port: u16) -> Result<TcpSocket, ErrorCode> {
    let (family, remote) = match addr {
        IpAddr::V4(a) => {
            let [x, y, z, w] = a.octets();
            (
                IpAddressFamily::Ipv4,
                IpSocketAddress::Ipv4(Ipv4SocketAddress { port, address: (x, y, z, w) }),
            )
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            (
                IpAddressFamily::Ipv6,
                IpSocketAddress::Ipv6(Ipv6SocketAddress {
                    port,
                    flow_info: 0,
                    address: (s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
                    scope_id: 0,
                }),
            )
        }
    };
    let socket = create_tcp_socket(family)?;
    socket.start_connect(network, remote)?;
    Ok(socket)
}
