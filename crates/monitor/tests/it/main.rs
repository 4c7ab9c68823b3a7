//! Notifications through real receivers on loopback.
