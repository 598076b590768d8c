//! Identity keys: how an observation names what it saw, and what each name
//! is worth when two observations are compared.
//!
//! A key is a name and a value (`mac` = `0e:5a:00:01:02:03`). Keys are of two
//! strengths:
//!
//! - **identity** keys name one device for its life: `serial`, `uuid` (BIOS or
//!   VM UUID), `mac`, `snmp_id` (sysName and sysObjectID), `moref` (a vSphere
//!   object on its endpoint), and any name a plugin declares;
//! - **locator** keys say where a device answers today and may pass to another
//!   device tomorrow: `ip` and `hostname`.
//!
//! [`crate::inventory::merge`] matches on identity keys first, in the order of
//! [`KeyName::rank`], and on locators only when no identity key contradicts.

use std::cmp::Ordering;
use std::fmt;
use std::net::IpAddr;

use crate::scheduler::targeting::{AddressSpan, parse_target};

/// Identity keys known to jobstack, strongest first; other names are
/// identities ranked after these.
const IDENTITY_RANKS: [&str; 5] = ["serial", "uuid", "mac", "snmp_id", "moref"];

/// Locator keys: where a device answers, not what it is.
const LOCATORS: [&str; 2] = ["ip", "hostname"];

/// The longest key value kept (a longer one is refused).
pub const MAX_KEY_LEN: usize = 256;

/// A key's name, checked: lowercase letters, digits and `_`, at most 40.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct KeyName(String);

impl KeyName {
    /// Check a key name.
    pub fn new(name: &str) -> Result<Self, String> {
        let ok = !name.is_empty()
            && name.len() <= 40
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if ok {
            Ok(Self(name.to_string()))
        } else {
            Err(format!("key name {name:?}: use 1 to 40 lowercase letters, digits and _"))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this key says where a device answers rather than what it is.
    pub fn is_locator(&self) -> bool {
        LOCATORS.contains(&self.0.as_str())
    }

    /// Strength among identity keys: lower is stronger. Locators rank last.
    pub fn rank(&self) -> usize {
        if self.is_locator() {
            return usize::MAX;
        }
        IDENTITY_RANKS.iter().position(|n| *n == self.0).unwrap_or(IDENTITY_RANKS.len())
    }
}

impl fmt::Display for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A key as stored: name and normalized value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Key {
    /// Its name.
    pub name: KeyName,
    /// Its value, normalized ([`Key::new`]).
    pub value: String,
}

impl Key {
    /// A key with its value normalized so that the same thing seen twice is
    /// the same text: addresses canonical, MACs lowercase with colons, UUIDs
    /// lowercase. `Ok(None)` for values that identify nothing (an empty value,
    /// the all-zero MAC). A value that cannot be what its name says is an error.
    pub fn new(name: &str, value: &str) -> Result<Option<Self>, String> {
        let name = KeyName::new(name)?;
        let value = value.trim();
        if value.is_empty() {
            return Ok(None);
        }
        if value.len() > MAX_KEY_LEN {
            return Err(format!("key {name}: longer than {MAX_KEY_LEN} bytes"));
        }
        let value = match name.as_str() {
            "ip" => value
                .parse::<IpAddr>()
                .map_err(|_| format!("key ip: {value:?} is not an IP address"))?
                .to_canonical()
                .to_string(),
            "mac" => match normalize_mac(value) {
                Some(mac) if mac == "00:00:00:00:00:00" => return Ok(None),
                Some(mac) => mac,
                None => return Err(format!("key mac: {value:?} is not a MAC address")),
            },
            "uuid" | "hostname" => value.to_ascii_lowercase(),
            _ => value.to_string(),
        };
        Ok(Some(Self { name, value }))
    }

    /// The address of an `ip` key, as a span of one address (for CIDR
    /// filters and coverage by a part's targets).
    pub fn address(&self) -> Option<AddressSpan> {
        if self.name.as_str() == "ip" { parse_target(&self.value) } else { None }
    }

    /// Stronger keys first ([`KeyName::rank`]), then by name and value.
    pub fn by_strength(a: &Key, b: &Key) -> Ordering {
        (a.name.rank(), &a.name, &a.value).cmp(&(b.name.rank(), &b.name, &b.value))
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.value)
    }
}

/// `0E-5A-00-01-02-03`, `0e5a.0001.0203`, `0x0e5a00010203` → `0e:5a:00:01:02:03`.
fn normalize_mac(text: &str) -> Option<String> {
    let text = text.strip_prefix("0x").unwrap_or(text);
    let digits: String = text.chars().filter(|c| !matches!(c, ':' | '-' | '.' | ' ')).collect();
    if digits.len() != 12 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let lower = digits.to_ascii_lowercase();
    let pairs: Vec<&str> = (0..6).map(|i| &lower[2 * i..2 * i + 2]).collect();
    Some(pairs.join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(name: &str, value: &str) -> Option<String> {
        Key::new(name, value).unwrap().map(|k| k.value)
    }

    #[test]
    fn values_are_normalized_so_the_same_thing_is_the_same_text() {
        assert_eq!(value("mac", "0E-5A-00-01-02-03").as_deref(), Some("0e:5a:00:01:02:03"));
        assert_eq!(value("mac", "0x0e5a00010203").as_deref(), Some("0e:5a:00:01:02:03"));
        assert_eq!(value("mac", "0e5a.0001.0203").as_deref(), Some("0e:5a:00:01:02:03"));
        assert_eq!(value("ip", " 10.0.0.5 ").as_deref(), Some("10.0.0.5"));
        assert_eq!(value("ip", "::ffff:10.0.0.5").as_deref(), Some("10.0.0.5"));
        assert_eq!(value("ip", "2001:DB8::1").as_deref(), Some("2001:db8::1"));
        assert_eq!(value("uuid", "ABC-1").as_deref(), Some("abc-1"));
        assert_eq!(value("serial", " VMware-42 ").as_deref(), Some("VMware-42"));
    }

    #[test]
    fn values_that_identify_nothing_are_dropped() {
        assert_eq!(value("mac", "00:00:00:00:00:00"), None);
        assert_eq!(value("serial", "  "), None);
    }

    #[test]
    fn values_that_cannot_be_what_their_name_says_are_refused() {
        assert!(Key::new("ip", "10.0.0.300").unwrap_err().contains("not an IP"));
        assert!(Key::new("mac", "0e:5a").unwrap_err().contains("not a MAC"));
        assert!(Key::new("Bad Name", "x").unwrap_err().contains("lowercase"));
        assert!(Key::new("serial", &"x".repeat(MAX_KEY_LEN + 1)).unwrap_err().contains("longer"));
    }

    #[test]
    fn identities_outrank_locators_and_known_identities_outrank_declared_ones() {
        let rank = |n: &str| KeyName::new(n).unwrap().rank();
        assert!(rank("serial") < rank("uuid"));
        assert!(rank("uuid") < rank("mac"));
        assert!(rank("mac") < rank("snmp_id"));
        assert!(rank("moref") < rank("account"));
        assert!(rank("account") < rank("ip"));
        assert!(KeyName::new("ip").unwrap().is_locator());
        assert!(!KeyName::new("account").unwrap().is_locator());
    }

    #[test]
    fn an_ip_key_has_an_address() {
        let key = Key::new("ip", "10.0.0.5").unwrap().unwrap();
        let net = parse_target("10.0.0.0/24").unwrap();
        assert!(net.contains(&key.address().unwrap()));
        assert_eq!(Key::new("mac", "0e5a00010203").unwrap().unwrap().address(), None);
    }
}
