//! Address specifications: parsing the `targets` parameter, cutting it into blocks
//! and writing a block back as the exact list of CIDR networks that covers it.
//!
//! A target is one address (`10.0.0.7`), a CIDR network (`10.0.0.0/24`, every
//! address in it, network and broadcast included, as nmap does) or an inclusive
//! range (`10.0.0.1-10.0.0.9`). IPv4 and IPv6 are both accepted; a range must not
//! mix them. Overlapping targets are merged so no address is scanned twice.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The most addresses one task may scan: a /16, enough for a site, small enough
/// that `split` stays well inside its budget.
pub const MAX_ADDRESSES: u128 = 65_536;

/// An inclusive run of consecutive addresses of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span {
    /// Whether the addresses are IPv4 (`lo`/`hi` then fit in 32 bits).
    pub v4: bool,
    /// The first address, as a number.
    pub lo: u128,
    /// The last address, as a number.
    pub hi: u128,
}

impl Span {
    /// How many addresses the span holds (`u128::MAX` for all of IPv6, one short).
    pub fn count(&self) -> u128 {
        (self.hi - self.lo).saturating_add(1)
    }

    /// The address at `n`, which must lie in the span.
    pub fn addr(&self, n: u128) -> IpAddr {
        to_addr(self.v4, n)
    }

    /// Every address of the span, in order.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        (self.lo..=self.hi).map(|n| self.addr(n))
    }

    /// The smallest list of CIDR networks whose union is exactly this span.
    pub fn to_cidrs(&self) -> Vec<String> {
        let width: u32 = if self.v4 { 32 } else { 128 };
        let mut out = Vec::new();
        let mut lo = self.lo;
        loop {
            // The largest aligned block starting at `lo` that does not pass `hi`:
            // `h` host bits, so 2^h addresses.
            let mut h = if lo == 0 { width } else { lo.trailing_zeros().min(width) };
            while h > 0 && block_last(lo, h) > self.hi {
                h -= 1;
            }
            if h == 0 {
                out.push(self.addr(lo).to_string());
            } else {
                out.push(format!("{}/{}", self.addr(lo), width - h));
            }
            let last = block_last(lo, h);
            if last >= self.hi {
                break;
            }
            lo = last + 1;
        }
        out
    }
}

/// The last address of the block of 2^`h` addresses starting at `lo` (aligned).
fn block_last(lo: u128, h: u32) -> u128 {
    if h >= 128 { u128::MAX } else { lo + ((1u128 << h) - 1) }
}

fn to_addr(v4: bool, n: u128) -> IpAddr {
    if v4 { IpAddr::V4(Ipv4Addr::from(n as u32)) } else { IpAddr::V6(Ipv6Addr::from(n)) }
}

fn to_number(addr: IpAddr) -> (bool, u128) {
    match addr {
        IpAddr::V4(a) => (true, u128::from(u32::from(a))),
        IpAddr::V6(a) => (false, u128::from(a)),
    }
}

/// Parse one target (address, CIDR or range) into a span.
pub fn parse_target(text: &str) -> Result<Span, String> {
    let t = text.trim();
    if let Ok(addr) = t.parse::<IpAddr>() {
        let (v4, n) = to_number(addr);
        return Ok(Span { v4, lo: n, hi: n });
    }
    if let Some((addr, len)) = t.split_once('/') {
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("target {text:?}: {addr:?} is not an IP address"))?;
        let (v4, n) = to_number(addr);
        let width = if v4 { 32 } else { 128 };
        let len: u32 = len
            .trim()
            .parse()
            .ok()
            .filter(|l| *l <= width)
            .ok_or_else(|| format!("target {text:?}: prefix length must be 0 to {width}"))?;
        let host_bits = width - len;
        let mask = if host_bits >= 128 { u128::MAX } else { (1u128 << host_bits) - 1 };
        return Ok(Span { v4, lo: n & !mask, hi: (n & !mask) | mask });
    }
    if let Some((a, b)) = t.split_once('-') {
        let parse = |s: &str| {
            s.trim()
                .parse::<IpAddr>()
                .map_err(|_| format!("target {text:?}: {:?} is not an IP address", s.trim()))
        };
        let (a, b) = (to_number(parse(a)?), to_number(parse(b)?));
        if a.0 != b.0 {
            return Err(format!("target {text:?}: a range cannot mix IPv4 and IPv6"));
        }
        if a.1 > b.1 {
            return Err(format!("target {text:?}: the range ends before it starts"));
        }
        return Ok(Span { v4: a.0, lo: a.1, hi: b.1 });
    }
    Err(format!(
        "target {text:?} is not an address, a CIDR network (10.0.0.0/24) or a range (10.0.0.1-10.0.0.9)"
    ))
}

/// Parse every target, merge overlapping and adjacent spans, and check the total
/// against [`MAX_ADDRESSES`]. The result is sorted (IPv4 first).
pub fn parse_targets<S: AsRef<str>>(targets: &[S]) -> Result<Vec<Span>, String> {
    if targets.is_empty() {
        return Err("targets is empty: give at least one address, network or range".into());
    }
    let mut spans =
        targets.iter().map(|t| parse_target(t.as_ref())).collect::<Result<Vec<_>, _>>()?;
    // IPv4 sorts before IPv6 (`v4: true` must come first).
    spans.sort_by_key(|s| (!s.v4, s.lo, s.hi));
    let mut merged: Vec<Span> = Vec::with_capacity(spans.len());
    for s in spans {
        match merged.last_mut() {
            Some(last) if last.v4 == s.v4 && s.lo <= last.hi.saturating_add(1) => {
                last.hi = last.hi.max(s.hi);
            }
            _ => merged.push(s),
        }
    }
    let total =
        merged.iter().try_fold(0u128, |acc, s| acc.checked_add(s.count())).unwrap_or(u128::MAX);
    if total > MAX_ADDRESSES {
        return Err(format!(
            "targets hold {} addresses; at most {MAX_ADDRESSES} may be scanned by one task",
            if total == u128::MAX { "too many".to_string() } else { total.to_string() }
        ));
    }
    Ok(merged)
}

/// Cut merged spans into blocks of at most `block_size` addresses, in order.
/// A block never mixes address families; it may join the end of one span and the
/// start of the next.
pub fn blocks(spans: &[Span], block_size: u128) -> Vec<Vec<Span>> {
    assert!(block_size > 0, "block size is validated before");
    let mut out: Vec<Vec<Span>> = Vec::new();
    let mut current: Vec<Span> = Vec::new();
    let mut room = block_size;
    for span in spans {
        if current.first().is_some_and(|f| f.v4 != span.v4) {
            out.push(std::mem::take(&mut current));
            room = block_size;
        }
        let mut lo = span.lo;
        loop {
            let take = room.min(span.hi - lo + 1);
            current.push(Span { v4: span.v4, lo, hi: lo + take - 1 });
            room -= take;
            if room == 0 {
                out.push(std::mem::take(&mut current));
                room = block_size;
            }
            if lo + take - 1 == span.hi {
                break;
            }
            lo += take;
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(text: &str) -> Span {
        parse_target(text).unwrap()
    }

    #[test]
    fn parses_address_cidr_and_range() {
        assert_eq!(span("10.0.0.7").count(), 1);
        let net = span("10.0.0.9/24");
        assert_eq!(net.addr(net.lo).to_string(), "10.0.0.0");
        assert_eq!(net.addr(net.hi).to_string(), "10.0.0.255");
        let range = span(" 10.0.0.250 - 10.0.1.4 ");
        assert_eq!(range.count(), 11);
        assert_eq!(span("::1").count(), 1);
        assert_eq!(span("fe80::/120").count(), 256);
        assert_eq!(span("0.0.0.0/0").count(), 1 << 32);
    }

    #[test]
    fn refuses_malformed_targets_naming_them() {
        for bad in
            ["10.0.0", "10.0.0.0/33", "10.0.0.9-10.0.0.1", "10.0.0.1-::1", "host.example", ""]
        {
            let err = parse_target(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn merges_overlaps_and_bounds_the_total() {
        let spans =
            parse_targets(&["10.0.0.8/29", "10.0.0.1-10.0.0.9", "10.0.0.20", "::1"]).unwrap();
        assert_eq!(spans.len(), 3);
        assert_eq!(spans[0].to_cidrs(), ["10.0.0.1", "10.0.0.2/31", "10.0.0.4/30", "10.0.0.8/29"]);
        assert_eq!(spans[1].to_cidrs(), ["10.0.0.20"]);
        assert_eq!(spans[2].to_cidrs(), ["::1"]);
        assert!(parse_targets(&["10.0.0.0/16"]).is_ok());
        let err = parse_targets(&["10.0.0.0/16", "10.1.0.0"]).unwrap_err();
        assert!(err.contains("65537 addresses"), "{err}");
        assert!(parse_targets(&["::/0"]).unwrap_err().contains("too many"));
        assert!(parse_targets::<&str>(&[]).is_err());
    }

    #[test]
    fn cidr_cover_is_exact() {
        let s = span("127.0.0.1-127.0.0.16");
        let cidrs = s.to_cidrs();
        assert_eq!(
            cidrs,
            ["127.0.0.1", "127.0.0.2/31", "127.0.0.4/30", "127.0.0.8/29", "127.0.0.16"]
        );
        // Re-parsing the cover gives back exactly the span.
        let back = parse_targets(&cidrs).unwrap();
        assert_eq!(back, vec![s]);
        assert_eq!(span("0.0.0.0/0").to_cidrs(), ["0.0.0.0/0"]);
        assert_eq!(span("::/0").to_cidrs(), ["::/0"]);
        assert_eq!(span("255.255.255.255").to_cidrs(), ["255.255.255.255"]);
    }

    #[test]
    fn blocks_hold_block_size_addresses_in_order() {
        let spans = parse_targets(&["10.0.0.0/28", "10.0.0.100-10.0.0.104", "::1-::3"]).unwrap();
        let b = blocks(&spans, 8);
        let sizes: Vec<u128> = b.iter().map(|blk| blk.iter().map(Span::count).sum()).collect();
        // 16 + 5 IPv4 addresses in blocks of 8, then the IPv6 ones apart.
        assert_eq!(sizes, [8, 8, 5, 3]);
        assert_eq!(b[1][0].to_cidrs(), ["10.0.0.8/29"]);
        assert!(b[3].iter().all(|s| !s.v4));
        let all: Vec<IpAddr> =
            b.iter().flatten().flat_map(|s| s.addresses().collect::<Vec<_>>()).collect();
        let expected: Vec<IpAddr> =
            spans.iter().flat_map(|s| s.addresses().collect::<Vec<_>>()).collect();
        assert_eq!(all, expected);
        // A block that ends mid-span continues in the next one.
        let b = blocks(&parse_targets(&["10.0.0.0-10.0.0.4", "10.0.0.10-10.0.0.12"]).unwrap(), 4);
        let sizes: Vec<u128> = b.iter().map(|blk| blk.iter().map(Span::count).sum()).collect();
        assert_eq!(sizes, [4, 4]);
        assert_eq!(b[1].len(), 2);
    }
}
