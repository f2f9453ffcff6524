//! What a program of the exec service is told in its environment besides its connection's
//! addresses: the TLS session of a `tls:` listener, and what a PROXY v2 header told of the
//! client's TLS with the proxy; and the addresses as programs expect them.

use crate::proxy_protocol::Tlvs;
use crate::socket::Address;
use crate::tls::TlsSession;

/// What a `tls:` listener tells the program of the session, in its environment.
pub(super) const TLS_VARS: [&str; 5] = [
    "SOCKETKIT_TLS_VERSION",
    "SOCKETKIT_TLS_SERVER_NAME",
    "SOCKETKIT_TLS_ALPN",
    "SOCKETKIT_TLS_CLIENT_SUBJECT",
    "SOCKETKIT_TLS_CLIENT_FINGERPRINT",
];

/// Sets [`TLS_VARS`] from `tls`: each that the session has (a name asked for, a protocol
/// agreed on, a client certificate).
pub(super) fn set_tls_vars(cmd: &mut std::process::Command, tls: &TlsSession) {
    let [version, server_name, alpn, subject, fingerprint] = TLS_VARS;
    set_var(cmd, version, tls.version);
    if let Some(name) = &tls.server_name {
        set_var(cmd, server_name, name);
    }
    if let Some(protocol) = &tls.alpn {
        set_var(cmd, alpn, &String::from_utf8_lossy(protocol));
    }
    if let Some(client) = tls.client_subject() {
        set_var(cmd, subject, &client);
    }
    if let Some(client) = tls.client_fingerprint() {
        set_var(cmd, fingerprint, &client.to_string());
    }
}

/// What a PROXY v2 header told of the client's TLS with the proxy (`--proxy-protocol`
/// behind a load balancer that terminated it), in the program's environment.
pub(super) const PROXY_VARS: [&str; 4] = [
    "SOCKETKIT_PROXY_SERVER_NAME",
    "SOCKETKIT_PROXY_ALPN",
    "SOCKETKIT_PROXY_TLS_VERSION",
    "SOCKETKIT_PROXY_TLS_CLIENT_CN",
];

/// Sets [`PROXY_VARS`] from `told`: each the header carried. The client's common name only
/// when the proxy says it verified the certificate: an unverified one proves nothing.
pub(super) fn set_proxy_vars(cmd: &mut std::process::Command, told: &Tlvs) {
    let [server_name, alpn, version, client_cn] = PROXY_VARS;
    if let Some(name) = &told.authority {
        set_var(cmd, server_name, name);
    }
    if let Some(protocol) = &told.alpn {
        set_var(cmd, alpn, &String::from_utf8_lossy(protocol));
    }
    if let Some(tls) = &told.tls {
        set_var(cmd, version, &tls.version);
        if let Some(cn) = tls.client_cn.as_ref().filter(|_| tls.client_verified) {
            set_var(cmd, client_cn, cn);
        }
    }
}

/// Sets `name` to `value` in the program's environment, unless `value` holds a NUL byte,
/// which no environment can (the program would not start at all): a PROXY header's TLVs
/// are a peer's bytes, and one with a NUL in a name must not keep the service from its
/// client. Such a variable is left out.
fn set_var(cmd: &mut std::process::Command, name: &str, value: &str) {
    if value.contains('\0') {
        return tracing::trace!(
            "{name} left out of the program's environment: its value holds a NUL byte"
        );
    }
    cmd.env(name, value);
}

/// The address's host as a program expects it: an IPv4 client of a dual-stack listener as
/// `127.0.0.1`, not `::ffff:127.0.0.1` (what inetd-style programs compare against).
pub(super) fn host_of(address: &Address) -> String {
    match (address.ip(), address.as_path()) {
        (Some(ip), _) => ip.to_canonical().to_string(),
        (None, Some(path)) => path.display().to_string(),
        (None, None) => String::new(),
    }
}

/// The address's port as text; empty for a Unix socket's.
pub(super) fn port_of(address: &Address) -> String {
    address.port().map(|p| p.to_string()).unwrap_or_default()
}
