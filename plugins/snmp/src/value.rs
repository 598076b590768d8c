//! SNMP values as the plugin sees them, decoded from the wire types of rasn-snmp,
//! and their JSON form in the inventory.

use rasn_smi::v2::{ApplicationSyntax, SimpleSyntax};
use rasn_snmp::v2::{ObjectSyntax, VarBindValue};

/// One value of a variable binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// INTEGER (Integer32 and enumerations).
    Integer(i64),
    /// OCTET STRING (DisplayString, PhysAddress, ...).
    Bytes(Vec<u8>),
    /// OBJECT IDENTIFIER.
    Oid(Vec<u32>),
    /// IpAddress.
    IpAddress([u8; 4]),
    /// Counter32.
    Counter32(u32),
    /// Gauge32 / Unsigned32.
    Gauge32(u32),
    /// TimeTicks (hundredths of a second).
    TimeTicks(u32),
    /// Opaque.
    Opaque(Vec<u8>),
    /// Counter64.
    Counter64(u64),
    /// NULL (what a request carries).
    Null,
    /// The agent has no such object.
    NoSuchObject,
    /// The object exists but not this instance.
    NoSuchInstance,
    /// Nothing follows in the agent's MIB view.
    EndOfMibView,
}

impl Value {
    /// Decode a variable binding's value.
    pub fn from_wire(value: &VarBindValue) -> Value {
        match value {
            VarBindValue::Unspecified => Value::Null,
            VarBindValue::NoSuchObject => Value::NoSuchObject,
            VarBindValue::NoSuchInstance => Value::NoSuchInstance,
            VarBindValue::EndOfMibView => Value::EndOfMibView,
            VarBindValue::Value(ObjectSyntax::Simple(s)) => match s {
                SimpleSyntax::Integer(i) => {
                    // Integer32 fits in i64; anything larger is out of spec.
                    Value::Integer(i64::try_from(i).unwrap_or(i64::MAX))
                }
                SimpleSyntax::String(s) => Value::Bytes(s.to_vec()),
                SimpleSyntax::ObjectId(o) => Value::Oid(o.to_vec()),
            },
            VarBindValue::Value(ObjectSyntax::ApplicationWide(a)) => match a {
                ApplicationSyntax::Address(ip) => {
                    let b: &[u8] = ip.0.as_ref();
                    Value::IpAddress([b[0], b[1], b[2], b[3]])
                }
                ApplicationSyntax::Counter(c) => Value::Counter32(c.0),
                ApplicationSyntax::Ticks(t) => Value::TimeTicks(t.0),
                ApplicationSyntax::Arbitrary(o) => Value::Opaque(o.as_ref().to_vec()),
                ApplicationSyntax::BigCounter(c) => Value::Counter64(c.0),
                ApplicationSyntax::Unsigned(g) => Value::Gauge32(g.0),
            },
        }
    }

    /// Whether the agent said the object is not there.
    pub fn is_absent(&self) -> bool {
        matches!(
            self,
            Value::NoSuchObject | Value::NoSuchInstance | Value::EndOfMibView | Value::Null
        )
    }

    /// A number, for the numeric types.
    pub fn as_number(&self) -> Option<serde_json::Value> {
        Some(match self {
            Value::Integer(i) => (*i).into(),
            Value::Counter32(n) | Value::Gauge32(n) | Value::TimeTicks(n) => (*n).into(),
            Value::Counter64(n) => (*n).into(),
            _ => return None,
        })
    }

    /// Text (a DisplayString); bytes that are not UTF-8 are replaced.
    pub fn as_text(&self) -> Option<serde_json::Value> {
        match self {
            Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned().into()),
            _ => None,
        }
    }

    /// Bytes as lowercase hex pairs joined by `:` (a PhysAddress: `02:fc:00:00:00:01`).
    pub fn as_hex(&self) -> Option<serde_json::Value> {
        match self {
            Value::Bytes(b) => {
                Some(b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":").into())
            }
            _ => None,
        }
    }

    /// Dotted OID text.
    pub fn as_oid(&self) -> Option<serde_json::Value> {
        match self {
            Value::Oid(o) => Some(crate::oids::dotted(o).into()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_each_kind() {
        assert_eq!(Value::Integer(-3).as_number(), Some((-3).into()));
        assert_eq!(Value::Counter64(1 << 40).as_number(), Some((1u64 << 40).into()));
        assert_eq!(Value::Bytes(b"eth0".to_vec()).as_text(), Some("eth0".into()));
        assert_eq!(
            Value::Bytes(vec![2, 0xfc, 0, 0, 0, 1]).as_hex(),
            Some("02:fc:00:00:00:01".into())
        );
        assert_eq!(Value::Bytes(vec![]).as_hex(), Some("".into()));
        assert_eq!(Value::Oid(vec![1, 3, 6, 1]).as_oid(), Some("1.3.6.1".into()));
        assert_eq!(Value::Bytes(vec![]).as_number(), None);
        assert!(Value::NoSuchInstance.is_absent());
        assert!(!Value::Integer(0).is_absent());
    }
}
