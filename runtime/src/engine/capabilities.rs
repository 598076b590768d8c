//! What one execution may touch outside its sandbox: deny by default, grant explicitly.
//!
//! A [`Grants`] starts empty: no network, no files, no environment, no inherited
//! stdio. The caller (the agent, from the task and its operator's settings; or
//! `jobstack exec`, from its flags) adds what this execution may use. The engine
//! then narrows the grant to the capabilities the plugin declared in its manifest.

use ipnet::IpNet;
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::plugin::Capability;

/// A directory made visible to the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preopen {
    /// The directory on the host.
    pub host: PathBuf,
    /// The path the plugin sees it at.
    pub guest: String,
    /// Whether the plugin may write there.
    pub writable: bool,
}

/// The capabilities granted to one execution.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    networks: Vec<IpNet>,
    preopens: Vec<Preopen>,
    http_hosts: Vec<String>,
    accept_self_signed: bool,
    /// The plugin's manifest lacks `network`: what a denied socket's log says.
    network_undeclared: bool,
}

/// How many denied socket addresses one execution logs (a plugin probing in a
/// loop must not flood the agent's log).
const LOGGED_SOCKET_DENIALS: usize = 5;

impl Grants {
    /// Nothing granted:
    /// - no socket may connect, bind or send anywhere, and name lookup is off;
    /// - no directory is visible;
    /// - no outgoing HTTP request may be sent, and HTTPS certificates are
    ///   verified against the usual root certificates;
    /// - the environment and arguments are empty, stdin is closed;
    /// - stdout and stderr go to the execution's captured logs, never the host's.
    pub fn new() -> Self {
        Grants::default()
    }

    /// Allow TCP and UDP to addresses inside `net`.
    pub fn allow_network(mut self, net: IpNet) -> Self {
        self.networks.push(net);
        self
    }

    /// Make the host directory `host` visible at `guest`.
    pub fn preopen(
        mut self, host: impl Into<PathBuf>, guest: impl Into<String>, writable: bool,
    ) -> Self {
        self.preopens.push(Preopen { host: host.into(), guest: guest.into(), writable });
        self
    }

    /// Allow outgoing HTTP requests (for plugins declaring the `http` capability)
    /// to `host` on any port, or to `host:port` only. The agent grants each target
    /// of the part. An entry that is not a host or `host:port` allows nothing.
    pub fn allow_http_host(mut self, host: impl Into<String>) -> Self {
        self.http_hosts.push(host.into());
        self
    }

    /// Accept any TLS certificate from the granted HTTP hosts (default `false`:
    /// certificates are verified). A per-task choice, for hosts with self-signed
    /// certificates such as a fresh ESX install; the handshake is still checked
    /// against the certificate's key.
    pub fn accept_self_signed_tls(mut self, accept: bool) -> Self {
        self.accept_self_signed = accept;
        self
    }

    /// The HTTP hosts granted.
    pub fn http_hosts(&self) -> &[String] {
        &self.http_hosts
    }

    /// Whether any TLS certificate is accepted.
    pub fn accepts_self_signed_tls(&self) -> bool {
        self.accept_self_signed
    }

    /// The networks granted.
    pub fn networks(&self) -> &[IpNet] {
        &self.networks
    }

    /// Why a socket to an address outside [`Grants::networks`] is denied: the
    /// grant that is missing, in the words of whoever can add it.
    pub fn missing_network_grant(&self) -> String {
        if self.network_undeclared {
            "the plugin's manifest does not declare the `network` capability".into()
        } else if self.networks.is_empty() {
            "no network is granted: none of the part's targets lies in the networks \
             this agent allows (--allow-net)"
                .into()
        } else {
            let nets: Vec<String> = self.networks.iter().map(ToString::to_string).collect();
            format!(
                "the address is not among the part's targets in the allowed networks ({})",
                nets.join(", ")
            )
        }
    }

    /// The directories granted.
    pub fn preopens(&self) -> &[Preopen] {
        &self.preopens
    }

    /// Drop whatever the plugin did not declare in its manifest: a plugin never
    /// gets more than it asked for, whatever the task grants.
    pub fn restrict_to(mut self, declared: &[Capability]) -> Self {
        if !declared.contains(&Capability::Network) {
            self.networks.clear();
            self.network_undeclared = true;
        }
        if !declared.contains(&Capability::Filesystem) {
            self.preopens.clear();
        }
        if !declared.contains(&Capability::Http) {
            self.http_hosts.clear();
            self.accept_self_signed = false;
        }
        self
    }

    /// Apply the grant to a WASI context builder that starts from nothing.
    pub(crate) fn apply(&self, wasi: &mut WasiCtxBuilder) -> std::io::Result<()> {
        wasi.allow_ip_name_lookup(false);
        // Sockets are on even with nothing granted, so that a denial reaches
        // the check below and the log says which grant was missing (the plugin
        // itself only sees "permission denied").
        wasi.allow_tcp(true).allow_udp(true);
        let nets: Arc<[IpNet]> = self.networks.clone().into();
        let missing = Arc::<str>::from(self.missing_network_grant());
        let logged = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        wasi.socket_addr_check(move |addr, usage| {
            let allowed = match usage {
                // Binding a local (ephemeral) address is how every connect and
                // every UDP socket starts; only peers are restricted.
                SocketAddrUse::TcpBind | SocketAddrUse::UdpBind => !nets.is_empty(),
                _ => nets.iter().any(|n| n.contains(&addr.ip())),
            };
            let peer = !matches!(usage, SocketAddrUse::TcpBind | SocketAddrUse::UdpBind);
            if !allowed && peer {
                let n = logged.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n < LOGGED_SOCKET_DENIALS {
                    tracing::warn!(%addr, ?usage, "plugin socket denied: {missing}");
                }
            }
            Box::pin(async move { allowed })
        });
        for p in &self.preopens {
            let perms = if p.writable { FsPerms::ReadWrite } else { FsPerms::ReadOnly };
            wasi.preopened_dir(&p.host, &p.guest, perms).map_err(|e| {
                std::io::Error::other(format!(
                    "cannot open {} for the plugin: {e}",
                    p.host.display()
                ))
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_grants_nothing() {
        let g = Grants::new();
        assert!(g.networks().is_empty());
        assert!(g.preopens().is_empty());
    }

    #[test]
    fn restrict_to_drops_undeclared_capabilities() {
        let g = Grants::new()
            .allow_network("127.0.0.1/32".parse().unwrap())
            .preopen("/tmp", "/tmp", true)
            .allow_http_host("127.0.0.1:8443")
            .accept_self_signed_tls(true);
        let net_only = g.clone().restrict_to(&[Capability::Network]);
        assert_eq!(net_only.networks().len(), 1);
        assert!(net_only.preopens().is_empty());
        assert!(net_only.http_hosts().is_empty());
        assert!(!net_only.accepts_self_signed_tls());
        let http_only = g.clone().restrict_to(&[Capability::Http]);
        assert_eq!(http_only.http_hosts(), ["127.0.0.1:8443"]);
        assert!(http_only.accepts_self_signed_tls());
        assert!(http_only.networks().is_empty());
        let none = g.restrict_to(&[]);
        assert_eq!(none, Grants { network_undeclared: true, ..Grants::new() });
    }

    #[test]
    fn a_socket_denial_names_the_missing_grant() {
        let declared = [Capability::Network];
        let undeclared = Grants::new().allow_network("10.0.0.1/32".parse().unwrap());
        assert!(undeclared.restrict_to(&[]).missing_network_grant().contains("`network`"));
        let none = Grants::new().restrict_to(&declared);
        assert!(none.missing_network_grant().contains("--allow-net"));
        let some =
            Grants::new().allow_network("10.0.0.1/32".parse().unwrap()).restrict_to(&declared);
        assert!(
            some.missing_network_grant().contains("10.0.0.1/32"),
            "{}",
            some.missing_network_grant()
        );
    }
}
