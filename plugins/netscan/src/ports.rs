//! Port lists: nmap-style text (`22,80,8000-8100`) or a JSON array of numbers,
//! turned into a sorted list without duplicates.

use serde::Deserialize;

/// The `ports` parameter as written by the admin.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PortSpec {
    /// `"22,80,443,8000-8100"`.
    Text(String),
    /// `[22, 80, 443]`.
    List(Vec<u32>),
}

/// Parse a port specification into sorted, distinct ports (1 to 65535).
pub fn parse_ports(spec: &PortSpec) -> Result<Vec<u16>, String> {
    let mut ports: Vec<u16> = Vec::new();
    match spec {
        PortSpec::List(list) => {
            for &p in list {
                ports.push(check_port(p, &p.to_string())?);
            }
        }
        PortSpec::Text(text) => {
            for item in text.split(',').map(str::trim) {
                if item.is_empty() {
                    return Err(format!("ports {text:?}: empty item"));
                }
                match item.split_once('-') {
                    None => ports.push(check_port(parse_number(item)?, item)?),
                    Some((a, b)) => {
                        let a = check_port(parse_number(a.trim())?, item)?;
                        let b = check_port(parse_number(b.trim())?, item)?;
                        if a > b {
                            return Err(format!("ports: range {item:?} ends before it starts"));
                        }
                        ports.extend(a..=b);
                    }
                }
            }
        }
    }
    ports.sort_unstable();
    ports.dedup();
    if ports.is_empty() {
        return Err("ports is empty: give at least one port".into());
    }
    Ok(ports)
}

fn parse_number(text: &str) -> Result<u32, String> {
    text.parse().map_err(|_| format!("ports: {text:?} is not a port number"))
}

fn check_port(port: u32, item: &str) -> Result<u16, String> {
    u16::try_from(port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("ports: {item:?} is outside 1-65535"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Result<Vec<u16>, String> {
        parse_ports(&PortSpec::Text(s.into()))
    }

    #[test]
    fn parses_lists_and_ranges_sorted_without_duplicates() {
        assert_eq!(text("80, 22,20-23,80").unwrap(), [20, 21, 22, 23, 80]);
        assert_eq!(text("1-65535").unwrap().len(), 65535);
        assert_eq!(parse_ports(&PortSpec::List(vec![443, 22, 443])).unwrap(), [22, 443]);
    }

    #[test]
    fn refuses_bad_ports_naming_them() {
        assert!(text("0").unwrap_err().contains("\"0\""));
        assert!(text("65536").unwrap_err().contains("65536"));
        assert!(text("90-80").unwrap_err().contains("90-80"));
        assert!(text("http").unwrap_err().contains("http"));
        assert!(text("22,,80").unwrap_err().contains("empty"));
        assert!(parse_ports(&PortSpec::List(vec![])).unwrap_err().contains("empty"));
        assert!(parse_ports(&PortSpec::List(vec![70000])).is_err());
    }
}
