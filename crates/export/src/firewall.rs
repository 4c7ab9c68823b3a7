//! `berth export firewall --nftables|--ufw`: inbound SSH, HTTP and HTTPS; loopback and
//! established traffic; everything else dropped. The admin listener (`/metrics`, the
//! dashboard) is never opened: reach it over an SSH tunnel.

/// The server's ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// SSH, default 22.
    pub ssh_port: u16,
    /// The proxy's HTTP port (`--http`), default 80.
    pub http_port: u16,
    /// The proxy's HTTPS port (`--https`), if the daemon has one; default 443.
    pub https_port: Option<u16>,
    /// UDP on the HTTPS port too (HTTP/3). berth does not speak HTTP/3 yet: false.
    pub http3: bool,
    /// The admin listener's port, closed explicitly even if it is bound to a public address.
    pub admin_port: Option<u16>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ssh_port: 22,
            http_port: 80,
            https_port: Some(443),
            http3: false,
            admin_port: Some(9100),
        }
    }
}

/// One opened port, with what it is for.
struct Open {
    port: u16,
    udp: bool,
    what: &'static str,
}

fn opened(o: &Options) -> Vec<Open> {
    let mut v = vec![
        Open {
            port: o.ssh_port,
            udp: false,
            what: "ssh",
        },
        Open {
            port: o.http_port,
            udp: false,
            what: "berth http",
        },
    ];
    if let Some(port) = o.https_port {
        v.push(Open {
            port,
            udp: false,
            what: "berth https",
        });
        if o.http3 {
            v.push(Open {
                port,
                udp: true,
                what: "berth http/3",
            });
        }
    }
    v
}

/// The admin port, unless it is one of the opened ones (then the operator asked for it).
fn closed_admin(o: &Options) -> Option<u16> {
    o.admin_port
        .filter(|p| !opened(o).iter().any(|open| open.port == *p))
}

/// An nftables ruleset (`nft -f berth.nft`): a table of its own, replaced whole on each load.
pub fn nftables(o: &Options) -> String {
    let mut s = String::new();
    s.push_str("#!/usr/sbin/nft -f\n");
    s.push_str("# berth: inbound firewall (made by `berth export firewall --nftables`).\n");
    s.push_str("# Load with `nft -f berth.nft`, or include it from /etc/nftables.conf.\n");
    s.push_str("# Created then deleted first, so loading it again replaces the table whole.\n");
    s.push_str("table inet berth\ndelete table inet berth\n\n");
    s.push_str("table inet berth {\n\tchain input {\n");
    s.push_str("\t\ttype filter hook input priority filter; policy drop;\n\n");
    s.push_str("\t\tiif \"lo\" accept\n");
    s.push_str("\t\tct state established,related accept\n");
    s.push_str("\t\tct state invalid drop\n");
    s.push_str(
        "\t\t# ICMP that IPv4 and IPv6 need to work (path MTU, neighbour discovery), and ping.\n",
    );
    s.push_str("\t\tip protocol icmp icmp type { echo-request, destination-unreachable, time-exceeded, parameter-problem } accept\n");
    s.push_str("\t\tip6 nexthdr ipv6-icmp icmpv6 type { echo-request, destination-unreachable, packet-too-big, time-exceeded, parameter-problem, nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } accept\n");
    if let Some(admin) = closed_admin(o) {
        s.push_str(&format!(
            "\t\t# berth's admin listener (/metrics, dashboard): never exposed; use an SSH tunnel.\n\t\ttcp dport {admin} drop\n"
        ));
    }
    for open in opened(o) {
        let proto = if open.udp { "udp" } else { "tcp" };
        s.push_str(&format!(
            "\t\t{proto} dport {} accept comment \"{}\"\n",
            open.port, open.what
        ));
    }
    s.push_str("\t}\n}\n");
    s
}

/// A script of `ufw` commands (ufw itself allows loopback and established traffic in its
/// before.rules).
pub fn ufw(o: &Options) -> String {
    let mut s = String::new();
    s.push_str("#!/bin/sh\n");
    s.push_str(
        "# berth: inbound firewall (made by `berth export firewall --ufw`). Run it as root.\n",
    );
    s.push_str(
        "# ufw's own before.rules allow loopback, established traffic and the ICMP IP needs.\n",
    );
    s.push_str("set -e\n");
    s.push_str("ufw default deny incoming\n");
    s.push_str("ufw default allow outgoing\n");
    if let Some(admin) = closed_admin(o) {
        s.push_str(&format!(
            "# berth's admin listener (/metrics, dashboard): never exposed; use an SSH tunnel.\nufw deny {admin}/tcp comment 'berth admin'\n"
        ));
    }
    for open in opened(o) {
        let proto = if open.udp { "udp" } else { "tcp" };
        s.push_str(&format!(
            "ufw allow {}/{proto} comment '{}'\n",
            open.port, open.what
        ));
    }
    s.push_str("ufw --force enable\n");
    s
}
