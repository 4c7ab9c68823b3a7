//! Ports for programs that must be told theirs before they start.

/// A port nobody listens on right now (TCP and UDP), for programs told their port in advance;
/// outside the ephemeral range, like the ports the supervisor gives instances.
pub fn free_port() -> u16 {
    loop {
        let port = supervisor::free_port().expect("a free port");
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
