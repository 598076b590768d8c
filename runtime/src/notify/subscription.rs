//! Subscriptions: where to deliver which kinds of event; and the admin's
//! allow-list of the hosts that may receive them.

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::EventKind;

/// A subscription as an admin asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSubscription {
    /// Where to post: an `http` or `https` URL on an allowed host.
    pub url: String,
    /// The kinds of event to deliver, e.g. `["run.failed", "asset.appeared"]`.
    pub events: Vec<String>,
    /// The signing secret (at least 16 characters); generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// The fewest characters of a signing secret an admin gives.
pub const MIN_SECRET_LEN: usize = 16;

impl NewSubscription {
    /// The event kinds, checked: what is wrong with the subscription, if
    /// anything, against the hosts `allow` permits.
    pub fn check(&self, allow: &AllowList) -> Result<Vec<EventKind>, String> {
        allow.permits(&self.url)?;
        if self.events.is_empty() {
            return Err("events: name at least one event kind".into());
        }
        let mut kinds =
            self.events.iter().map(|e| EventKind::parse(e)).collect::<Result<Vec<_>, _>>()?;
        kinds.sort();
        kinds.dedup();
        if self.secret.as_ref().is_some_and(|s| s.chars().count() < MIN_SECRET_LEN) {
            return Err(format!("secret: at least {MIN_SECRET_LEN} characters"));
        }
        Ok(kinds)
    }
}

/// A stored subscription, as listed (never with its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Subscription {
    /// Its id.
    pub id: i64,
    /// Where it posts.
    pub url: String,
    /// The kinds it delivers.
    pub events: Vec<EventKind>,
    /// The last outbox event delivered or dead-lettered.
    pub cursor: i64,
    /// Failed attempts at the event after the cursor.
    pub attempts: u32,
    /// When the next attempt is due, after a failure.
    #[schema(required = true)]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Why the last attempt failed.
    #[schema(required = true)]
    pub last_error: Option<String>,
    /// Events delivered so far.
    pub delivered: u64,
    /// Its creation.
    pub created_at: DateTime<Utc>,
}

impl Subscription {
    /// Whether it delivers events of `kind`.
    pub fn wants(&self, kind: EventKind) -> bool {
        self.events.contains(&kind)
    }
}

/// The hosts webhooks may be delivered to: host names, addresses and
/// networks, set by the admin (`--webhook-allow`). Empty: none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    names: Vec<String>,
    networks: Vec<IpNet>,
}

impl AllowList {
    /// Read the admin's entries: `hooks.example.org`, `192.0.2.7`, `10.0.0.0/8`.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut allow = AllowList::default();
        for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            if let Ok(net) = entry.parse::<IpNet>() {
                allow.networks.push(net.trunc());
            } else if let Ok(ip) = entry.parse::<std::net::IpAddr>() {
                allow.networks.push(IpNet::from(ip));
            } else if entry.contains(['/', ':', ' ']) {
                return Err(format!("webhook allow-list: {entry:?} is no host name or network"));
            } else {
                allow.names.push(entry.to_ascii_lowercase());
            }
        }
        Ok(allow)
    }

    /// Whether a delivery to `url` is allowed, saying why not.
    pub fn permits(&self, url: &str) -> Result<(), String> {
        let parsed =
            reqwest::Url::parse(url).map_err(|e| format!("url: {url:?} is no URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("url: {url:?} is not http or https"));
        }
        let allowed = match parsed.host() {
            Some(url::Host::Domain(name)) => {
                self.names.iter().any(|n| n == &name.to_ascii_lowercase())
            }
            Some(url::Host::Ipv4(ip)) => {
                self.networks.iter().any(|n| n.contains(&std::net::IpAddr::V4(ip)))
            }
            Some(url::Host::Ipv6(ip)) => {
                self.networks.iter().any(|n| n.contains(&std::net::IpAddr::V6(ip)))
            }
            None => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(format!(
                "url: {} is not on the daemon's webhook allow-list (--webhook-allow)",
                parsed.host_str().unwrap_or(url)
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(entries: &[&str]) -> AllowList {
        AllowList::parse(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn only_hosts_on_the_allow_list_receive_webhooks() {
        let list = allow(&["hooks.example.org", "127.0.0.1", "10.1.0.0/16"]);
        assert!(list.permits("https://hooks.example.org/jobstack").is_ok());
        assert!(list.permits("https://HOOKS.example.org:8443/x").is_ok());
        assert!(list.permits("http://127.0.0.1:9999/hook").is_ok());
        assert!(list.permits("http://10.1.200.3/hook").is_ok());
        let err = list.permits("http://169.254.169.254/latest").unwrap_err();
        assert!(err.contains("allow-list"), "{err}");
        assert!(list.permits("https://evil.example.org/").is_err());
        assert!(list.permits("file:///etc/passwd").unwrap_err().contains("not http"));
        assert!(AllowList::default().permits("http://127.0.0.1/").is_err(), "empty: none");
    }

    #[test]
    fn a_subscription_names_known_kinds_and_a_long_enough_secret() {
        let list = allow(&["127.0.0.1"]);
        let mut sub = NewSubscription {
            url: "http://127.0.0.1:1/h".into(),
            events: vec!["run.failed".into(), "agent.down".into(), "run.failed".into()],
            secret: None,
        };
        assert_eq!(sub.check(&list).unwrap(), [EventKind::RunFailed, EventKind::AgentDown]);
        sub.events.push("run.exploded".into());
        assert!(sub.check(&list).unwrap_err().contains("unknown event kind"));
        sub.events = vec![];
        assert!(sub.check(&list).unwrap_err().contains("at least one"));
        sub.events = vec!["run.failed".into()];
        sub.secret = Some("short".into());
        assert!(sub.check(&list).unwrap_err().contains("16 characters"));
    }
}
