//! The objects the inventory reads, by number (no MIB files are needed: the
//! plugin knows the few OIDs of SNMPv2-MIB and IF-MIB it asks for).

/// `system` (SNMPv2-MIB, RFC 3418): name and scalar OID (with the `.0` instance).
pub const SYSTEM: [(&str, &[u32]); 6] = [
    ("sysDescr", &[1, 3, 6, 1, 2, 1, 1, 1, 0]),
    ("sysObjectID", &[1, 3, 6, 1, 2, 1, 1, 2, 0]),
    ("sysUpTime", &[1, 3, 6, 1, 2, 1, 1, 3, 0]),
    ("sysContact", &[1, 3, 6, 1, 2, 1, 1, 4, 0]),
    ("sysName", &[1, 3, 6, 1, 2, 1, 1, 5, 0]),
    ("sysLocation", &[1, 3, 6, 1, 2, 1, 1, 6, 0]),
];

/// `ifEntry` (IF-MIB, RFC 2863): the table row every column hangs from.
pub const IF_ENTRY: [u32; 9] = [1, 3, 6, 1, 2, 1, 2, 2, 1];

/// The `ifTable` columns read: name and column number under [`IF_ENTRY`].
pub const IF_COLUMNS: [(&str, u32); 10] = [
    ("ifIndex", 1),
    ("ifDescr", 2),
    ("ifType", 3),
    ("ifMtu", 4),
    ("ifSpeed", 5),
    ("ifPhysAddress", 6),
    ("ifAdminStatus", 7),
    ("ifOperStatus", 8),
    ("ifInOctets", 10),
    ("ifOutOctets", 16),
];

/// The OID of an `ifTable` column.
pub fn if_column(column: u32) -> Vec<u32> {
    let mut oid = IF_ENTRY.to_vec();
    oid.push(column);
    oid
}

/// Dotted text of an OID, without a leading dot (`1.3.6.1.2.1.1.1.0`).
pub fn dotted(oid: &[u32]) -> String {
    oid.iter().map(u32::to_string).collect::<Vec<_>>().join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_the_if_mib_numbers() {
        assert_eq!(dotted(&if_column(16)), "1.3.6.1.2.1.2.2.1.16");
        assert_eq!(dotted(SYSTEM[2].1), "1.3.6.1.2.1.1.3.0");
    }
}
