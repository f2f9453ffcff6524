//! TLS failures said in socketkit's words wherever they are told, not rustls's: a relay's
//! `closed` line for a TLS target that ended without close_notify (rustls's sentence ends
//! in a link to its manual), and `bench`'s first error for a server that wants a client
//! certificate (`received fatal alert: CertificateRequired`). `connect` said both in words
//! already. Found by an outside audit of socketkit's TLS.

use std::io::Read;
use std::time::Duration;

use crate::support::certs::Pki;
use crate::support::net::connect;
use crate::support::process::{DEADLINE, Running, run, socketkit};
use crate::support::tls_peers::python_server;
use crate::tls_server::serve_tls;

#[test]
fn a_relays_tls_target_that_ends_without_close_notify_is_a_truncation_in_words() {
    let pki = Pki::new();
    let Some(server) = python_server(&pki.server, "truncate", "partial data") else {
        return;
    };
    let mut cmd = socketkit();
    cmd.args(["forward", "-v", "-l", "127.0.0.1:0", "--to"])
        .arg(format!("tls:localhost:{}", server.port()))
        .args(["--tls-ca", pki.ca()]);
    let relay = Running::start(cmd, 1);
    let mut client = connect(&relay.addr());
    let mut got = Vec::new();
    // The relay passes the cut on as a reset: the bytes, then an error.
    let _ = client.read_to_end(&mut got);
    assert_eq!(got, b"partial data");
    relay.wait_for_stderr(&["closed peer="], DEADLINE);
    let log = relay.stderr();
    let closed = log
        .lines()
        .find(|l| l.contains("closed peer="))
        .unwrap_or("");
    assert!(
        closed.contains(
            "error=\"the peer closed the connection without a TLS close_notify, so the data may be truncated\""
        ),
        "{log}"
    );
    assert!(!log.contains("docs.rs"), "{log}");
}

#[test]
fn bench_says_in_words_that_the_server_wants_a_client_certificate() {
    let pki = Pki::new();
    let server = serve_tls("echo", &pki.server, &["--tls-client-ca", pki.ca()]);
    let mut bench = socketkit();
    bench
        .args(["bench", &server.endpoints()[0], "--mode", "echo"])
        .args(["-c", "1", "--count", "3", "--timeout", "2s"])
        .args(["--tls-ca", pki.ca()]);
    let out = run(bench, Vec::new(), DEADLINE + Duration::from_secs(10));
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), out.stderr);
    assert!(all.contains("first: "), "{all}");
    assert!(!all.contains("CertificateRequired"), "{all}");
    assert!(all.contains("client certificate"), "{all}");
}
