//! `connect -z` on a `tls:` endpoint makes the handshake, as `ncat --ssl -z` does: a port
//! that takes the connection but speaks no TLS, or whose certificate fails verification,
//! is not open to a TLS client. It took the TCP connection alone for success (exit 0,
//! `--tls-ca` never used). Found by an outside audit of socketkit's TLS beside openssl,
//! curl and ncat.

use crate::support::certs::Pki;
use crate::support::process::{DEADLINE, Output, Running, run, socketkit};
use crate::tls_server::serve_tls;

/// `connect -z tls:127.0.0.1:PORT EXTRA...`.
fn probe(port: u16, extra: &[&str]) -> Output {
    let mut cmd = socketkit();
    cmd.args(["connect", "-z", &format!("tls:127.0.0.1:{port}")])
        .args(extra);
    run(cmd, Vec::new(), DEADLINE)
}

#[test]
fn a_tls_probe_succeeds_only_with_a_handshake_the_client_accepts() {
    let pki = Pki::new();
    let tls = serve_tls("echo", &pki.server, &["-v"]);
    let mut plain = socketkit();
    plain.args(["serve", "greeting", "-l", "127.0.0.1:0"]);
    let plain = Running::start(plain, 1);
    let ca = pki.ca.to_str().expect("temp paths are UTF-8");

    let out = probe(tls.port(), &["--tls-ca", ca]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    let out = probe(tls.port(), &["--tls-insecure"]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    // The probe ends its session cleanly: the server saw a whole, empty exchange.
    tls.wait_for_stderr(&["bytes_in=0 bytes_out=0"], DEADLINE);
    assert!(!tls.stderr().contains("error="), "{}", tls.stderr());

    // The system's store does not know the test CA.
    let out = probe(tls.port(), &[]);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("certificate has an unknown issuer"),
        "{}",
        out.stderr
    );
    let out = probe(plain.port(), &["--tls-insecure"]);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("the peer does not speak TLS"),
        "{}",
        out.stderr
    );
}
