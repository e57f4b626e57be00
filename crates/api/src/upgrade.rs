//! Streaming upgrades (`kubectl exec`, `attach`, `port-forward`): which of a client's request
//! headers say what it upgrades to, and so pass on to the node agent and from it to the
//! runtime's streaming server.

/// Whether the header (named in lower case, as HTTP/1.1 libraries keep names) belongs to the
/// upgrade: `Connection`, `Upgrade`, the SPDY protocol versions, the WebSocket handshake.
pub fn is_upgrade_header(name: &str) -> bool {
    name == "connection"
        || name == "upgrade"
        || name == "x-stream-protocol-version"
        || name.starts_with("sec-websocket-")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_handshake_passes_and_credentials_do_not() {
        for h in [
            "upgrade",
            "sec-websocket-protocol",
            "x-stream-protocol-version",
        ] {
            assert!(super::is_upgrade_header(h), "{h}");
        }
        for h in ["authorization", "cookie", "impersonate-user"] {
            assert!(!super::is_upgrade_header(h), "{h}");
        }
    }
}
