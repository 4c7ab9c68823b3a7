//! Which client a request is from: the TCP peer, or — when the peer is a trusted proxy — the
//! right-most untrusted address of `X-Forwarded-For`.
//!
//! The left-most `X-Forwarded-For` entry is whatever the client wrote, so it is never taken
//! blindly: each trusted proxy appends the address it saw, and walking from the right past the
//! trusted ones reaches the first address no trusted proxy can vouch beyond.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use http::HeaderMap;

use crate::forward::X_FORWARDED_FOR;

/// An IP network (`10.0.0.0/8`, `fd00::/8`) or one address (`127.0.0.1` = `/32`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `None` when `prefix` is longer than the address (32 for IPv4, 128 for IPv6). Host bits
    /// are cleared. An IPv4-mapped IPv6 address is taken as the IPv4 address.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Cidr> {
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() && prefix >= 96 => {
                (IpAddr::V4(v6.to_ipv4_mapped()?), prefix - 96)
            }
            other => (other, prefix),
        };
        let addr = match addr {
            IpAddr::V4(v4) if prefix <= 32 => IpAddr::V4(mask_v4(v4.to_bits(), prefix).into()),
            IpAddr::V6(v6) if prefix <= 128 => IpAddr::V6(mask_v6(v6.to_bits(), prefix).into()),
            _ => return None,
        };
        Some(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask_v4(ip.to_bits(), self.prefix) == net.to_bits()
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask_v6(ip.to_bits(), self.prefix) == net.to_bits()
            }
            _ => false,
        }
    }
}

fn mask_v4(bits: u32, prefix: u8) -> u32 {
    bits & u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask_v6(bits: u128, prefix: u8) -> u128 {
    bits & u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = String;

    /// `"10.0.0.0/8"`, `"::1"`, `"192.168.1.7"`.
    fn from_str(s: &str) -> Result<Cidr, String> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or network"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: the prefix length must be 0 to {max}"))?,
        };
        Cidr::new(ip, prefix).ok_or_else(|| format!("`{s}` is not a valid network"))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The address a request is keyed by: `peer` unless it is in `trusted`; then the right-most
/// `X-Forwarded-For` entry that is not trusted. If every entry is trusted, or an entry is not
/// an address, the last trusted address reached is the client (nothing further can be
/// believed).
pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let peer = peer.to_canonical();
    if trusted.is_empty() || !trusted.iter().any(|c| c.contains(peer)) {
        return peer;
    }
    let mut client = peer;
    // Several X-Forwarded-For lines form one list, in order.
    for value in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
        let Ok(text) = value.to_str() else {
            return client;
        };
        for entry in text.rsplit(',') {
            let Some(ip) = parse_entry(entry.trim()) else {
                return client;
            };
            client = ip;
            if !trusted.iter().any(|c| c.contains(ip)) {
                return ip;
            }
        }
    }
    client
}

/// `1.2.3.4`, `::1`, and the forms with a port some proxies write (`1.2.3.4:5678`,
/// `[::1]:5678`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    entry
        .parse::<std::net::SocketAddr>()
        .ok()
        .map(|a| a.ip().to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn check(peer: &str, xff: &[&str], trusted: &[&str], expected: &str) {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append(&X_FORWARDED_FOR, v.parse().unwrap());
        }
        let got = client_ip(peer.parse().unwrap(), &h, &nets(trusted));
        assert_eq!(got.to_string(), expected, "peer={peer} xff={xff:?}");
    }

    #[test]
    fn cidrs() {
        let c: Cidr = "10.1.2.3/8".parse().unwrap();
        assert_eq!(c.to_string(), "10.0.0.0/8");
        assert!(c.contains("10.200.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("example.com".parse::<Cidr>().is_err());
    }

    #[test]
    fn forwarded_for() {
        let lb = &["10.0.0.0/8"];
        // an untrusted peer's header is ignored
        check("1.2.3.4", &["9.9.9.9"], lb, "1.2.3.4");
        check("10.0.0.1", &["9.9.9.9"], &[], "10.0.0.1");
        // a trusted peer: right-most untrusted entry, never the forged left-most one
        check("10.0.0.1", &["6.6.6.6, 5.5.5.5"], lb, "5.5.5.5");
        check("10.0.0.1", &["6.6.6.6, 5.5.5.5, 10.0.0.7"], lb, "5.5.5.5");
        check("10.0.0.1", &["6.6.6.6", "5.5.5.5, 10.0.0.7"], lb, "5.5.5.5");
        check("10.0.0.1", &["5.5.5.5:4711"], lb, "5.5.5.5");
        check("10.0.0.1", &["[2001:db8::1]:4711"], lb, "2001:db8::1");
        // all trusted: the left-most trusted address; garbage: the last trusted reached
        check("10.0.0.1", &["10.0.0.9, 10.0.0.7"], lb, "10.0.0.9");
        check("10.0.0.1", &["nonsense, 10.0.0.7"], lb, "10.0.0.7");
        check("10.0.0.1", &[], lb, "10.0.0.1");
        check("::ffff:10.0.0.1", &["5.5.5.5"], lb, "5.5.5.5");
    }
}
