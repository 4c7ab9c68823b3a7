//! Which client a request is from: the TCP peer, or — when the peer is a trusted proxy — the
//! right-most untrusted address of `X-Forwarded-For`.
//!
//! The left-most `X-Forwarded-For` entry is whatever the client wrote, so it is never taken
//! blindly: each trusted proxy appends the address it saw, and walking from the right past the
//! trusted ones reaches the first address no trusted proxy can vouch beyond.

use std::net::IpAddr;

use http::{HeaderMap, HeaderValue};
use ipnet::IpNet;

use crate::field::visible_ascii;
use crate::forward::X_FORWARDED_FOR;

/// Whether `ip` is in one of `nets`. An IPv4-mapped IPv6 address is taken as the IPv4
/// address, and an IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) holds the IPv4 addresses
/// it maps.
fn trusts(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    nets.iter().any(|net| match (net, ip) {
        (IpNet::V6(net), IpAddr::V4(v4)) => net.contains(&v4.to_ipv6_mapped()),
        (net, ip) => net.contains(&ip),
    })
}

/// The address a request is keyed by: `peer` unless it is in `trusted`; then the right-most
/// `X-Forwarded-For` entry that is not trusted. If every entry is trusted, or an entry is not
/// an address, the last trusted address reached is the client (nothing further can be
/// believed).
pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let lines = headers.get_all(&X_FORWARDED_FOR).iter();
    client_ip_from(peer, lines.map(HeaderValue::as_bytes), trusted)
}

/// [`client_ip`] with the `X-Forwarded-For` field values given in the order received.
pub(crate) fn client_ip_from<'a>(
    peer: IpAddr,
    xff: impl DoubleEndedIterator<Item = &'a [u8]>,
    trusted: &[IpNet],
) -> IpAddr {
    let peer = peer.to_canonical();
    if trusted.is_empty() || !trusts(trusted, peer) {
        return peer;
    }
    let mut client = peer;
    // Several X-Forwarded-For lines form one list, in order.
    for value in xff.rev() {
        let Some(text) = visible_ascii(value) else {
            return client;
        };
        for entry in text.rsplit(',') {
            let Some(ip) = parse_entry(entry.trim()) else {
                return client;
            };
            client = ip;
            if !trusts(trusted, ip) {
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

    fn nets(list: &[&str]) -> Vec<IpNet> {
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
    fn networks() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let check = |net: &str, inside: &[&str], outside: &[&str]| {
            let nets = match net.parse::<IpNet>() {
                Ok(net) => vec![net],
                Err(_) => vec![IpNet::from(ip(net))],
            };
            for a in inside {
                assert!(trusts(&nets, ip(a)), "{a} in {net}");
            }
            for a in outside {
                assert!(!trusts(&nets, ip(a)), "{a} not in {net}");
            }
        };
        check(
            "10.1.2.3/8",
            &["10.200.0.1", "::ffff:10.0.0.1"],
            &["11.0.0.1"],
        );
        check("127.0.0.1", &["127.0.0.1"], &["127.0.0.2"]);
        check("fd00::/8", &["fd12::1"], &["fe80::1"]);
        check("0.0.0.0/0", &["8.8.8.8"], &["::1"]);
        check(
            "::ffff:10.0.0.0/104",
            &["10.0.0.1", "::ffff:10.9.9.9"],
            &["11.0.0.1"],
        );
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
