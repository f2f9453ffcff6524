//! Certificate rotation: SIGHUP makes `serve` and `forward -l tls:` read their certificate,
//! key and client CA files again for the handshakes to come, and `forward --to tls:` its
//! CAs and client certificate; sessions already made are kept, and so is the configuration
//! in force when the files no longer load. A certificate that clients refuse is warned of,
//! and its expiry is a metric.

use std::io::Write;
use std::time::Duration;

use crate::balancer::{sample, start_with_metrics};
use crate::support::certs::{Pair, Pki};
use crate::support::process::{DEADLINE, Output, Running, lines_of, run, socketkit};

/// How long a reload may take to be said on a loaded machine.
const RELOADED: Duration = Duration::from_secs(10);

/// The files a server is started with, which the test then rewrites.
fn live_pair(pki: &Pki) -> Pair {
    Pair {
        cert: pki.dir.path().join("live-cert.pem"),
        key: pki.dir.path().join("live-key.pem"),
    }
}

/// Sends `process` SIGHUP and waits for it to say `said`.
fn hangup(process: &Running, said: impl AsRef<str>) {
    process.signal(libc::SIGHUP);
    process.wait_for_stderr(&[said.as_ref()], RELOADED);
}

/// Puts `pair` where `live` is, as a renewal does.
fn install(pair: &Pair, live: &Pair) {
    std::fs::copy(&pair.cert, &live.cert).expect("copy the certificate");
    std::fs::copy(&pair.key, &live.key).expect("copy the key");
}

/// `connect ENDPOINT` (a `tls:` one) with `args`, `input` on its stdin.
fn connect(endpoint: &str, args: &[&str], input: &[u8]) -> Output {
    let mut cmd = socketkit();
    cmd.args(["connect", endpoint]).args(args);
    run(cmd, input.to_vec(), DEADLINE)
}

#[test]
fn sighup_puts_a_renewed_certificate_in_force_and_keeps_sessions_and_broken_files_out() {
    let pki = Pki::new();
    let live = live_pair(&pki);
    install(&pki.stranger, &live);
    let mut cmd = socketkit();
    cmd.args(["serve", "echo", "-l", "tls:127.0.0.1:0"]).args([
        "--tls-cert",
        live.cert(),
        "--tls-key",
        live.key(),
    ]);
    let server = Running::start(cmd, 1);
    let addr = server.addr();

    // The first certificate is signed by a CA the clients do not trust.
    let out = connect(&addr, &["--tls-ca", pki.ca()], b"refused\n");
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("unknown issuer"), "{}", out.stderr);

    // A session made with it, which the reload must leave alone.
    let mut held_cmd = socketkit();
    held_cmd.args(["connect", &addr, "--tls-insecure"]);
    let mut held = Running::start(held_cmd, 0);
    let mut held_in = held.take_stdin();
    let held_out = lines_of(held.take_stdout());
    held_in.write_all(b"before\n").expect("write");
    let line = held_out
        .recv_timeout(DEADLINE)
        .expect("the echo before the reload");
    assert_eq!(line, b"before\n");

    // Renewed: the trusted certificate takes the next handshakes.
    install(&pki.server, &live);
    hangup(
        &server,
        format!(
            "TLS certificate reloaded: {} and {}",
            live.cert(),
            live.key()
        ),
    );
    let out = connect(&addr, &["--tls-ca", pki.ca()], b"renewed\n");
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout, b"renewed\n");

    // The session made before goes on with the certificate it was made with.
    held_in.write_all(b"after\n").expect("write");
    let line = held_out
        .recv_timeout(DEADLINE)
        .expect("the echo after the reload");
    assert_eq!(line, b"after\n");
    drop(held_in);
    assert!(held.wait(DEADLINE).success(), "{}", held.stderr());

    // Half a renewal (a key that is not the certificate's) keeps the renewed pair in force.
    std::fs::copy(&pki.client.key, &live.key).expect("copy the wrong key");
    hangup(
        &server,
        format!(
            "TLS certificate not reloaded, the old one stays: cannot load TLS private key {}: it does not match the certificate in {}",
            live.key(),
            live.cert()
        ),
    );
    let out = connect(&addr, &["--tls-ca", pki.ca()], b"kept\n");
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout, b"kept\n");
}

#[test]
fn forward_reloads_its_client_ca_on_sighup() {
    let pki = Pki::new();
    let mut greeting_cmd = socketkit();
    greeting_cmd.args(["serve", "greeting", "-l", "127.0.0.1:0"]);
    let greeting = Running::start(greeting_cmd, 1);
    let client_ca = pki.dir.path().join("live-client-ca.pem");
    std::fs::copy(&pki.ca, &client_ca).expect("copy the CA");
    let client_ca = client_ca.to_str().expect("temp paths are UTF-8");
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "tls:127.0.0.1:0", "--to", &greeting.addr()])
        .args([
            "--tls-cert",
            pki.server.cert(),
            "--tls-key",
            pki.server.key(),
        ])
        .args(["--tls-client-ca", client_ca]);
    let relay = Running::start(cmd, 1);
    let with_client_cert = [
        "--tls-ca",
        pki.ca(),
        "--tls-cert",
        pki.client.cert(),
        "--tls-key",
        pki.client.key(),
    ];
    let out = connect(&relay.addr(), &with_client_cert, b"");
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "你好");

    // The client CA is replaced by one that signed nobody's certificate.
    std::fs::copy(pki.namesake_ca(), client_ca).expect("replace the CA");
    hangup(
        &relay,
        format!(
            "TLS certificate reloaded: {} and {}, client CAs from {client_ca}",
            pki.server.cert(),
            pki.server.key()
        ),
    );
    let out = connect(&relay.addr(), &with_client_cert, b"");
    assert_ne!(out.code(), 0, "{}", out.stderr);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("你好"),
        "{}",
        out.stderr
    );
}

#[test]
fn an_expired_certificate_is_served_with_a_warning_and_its_expiry_is_a_metric() {
    let pki = Pki::new();
    let live = live_pair(&pki);
    install(&pki.expired, &live);
    let mut cmd = socketkit();
    cmd.args(["serve", "greeting", "-l", "tls:127.0.0.1:0"])
        .args(["--tls-cert", live.cert(), "--tls-key", live.key()])
        .args(["--metrics", "127.0.0.1:0"]);
    let (server, metrics) = start_with_metrics(cmd);
    // Said after the readiness lines, which stay first.
    server.wait_for_stderr(
        &[&format!(
            "TLS certificate {} has expired (valid until 2020-12-31T00:00:00Z): clients that verify it refuse the handshake",
            live.cert()
        )],
        RELOADED,
    );
    let stderr = server.stderr();
    assert!(stderr.starts_with("listening on "), "{stderr}");
    let expiry = "socketkit_tls_certificate_expiry_timestamp_seconds";
    let labels = format!("certificate=\"{}\"", live.cert());
    // 2020-12-31T00:00:00Z
    assert_eq!(sample(&metrics, expiry, &labels), 1_609_372_800);
    let out = connect(&server.addr(), &["--tls-ca", pki.ca()], b"");
    assert!(
        out.stderr.contains("certificate has expired"),
        "{}",
        out.stderr
    );

    // Renewed: the metric follows the certificate in force.
    install(&pki.server, &live);
    hangup(&server, "TLS certificate reloaded: ");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let renewed = sample(&metrics, expiry, &labels);
    assert!(renewed > now, "{renewed} is not after {now}");
    let out = connect(&server.addr(), &["--tls-ca", pki.ca()], b"");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "你好",
        "{}",
        out.stderr
    );
}

#[test]
fn forward_reloads_the_client_certificate_it_shows_its_target_on_sighup() {
    let pki = Pki::new();
    let mut backend_cmd = socketkit();
    backend_cmd
        .args(["serve", "greeting", "-l", "tls:127.0.0.1:0"])
        .args([
            "--tls-cert",
            pki.server.cert(),
            "--tls-key",
            pki.server.key(),
        ])
        .args(["--tls-client-ca", pki.ca()]);
    let backend = Running::start(backend_cmd, 1);
    // The relay starts with a certificate the target does not take.
    let live = live_pair(&pki);
    install(&pki.stranger, &live);
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "127.0.0.1:0", "--to", &backend.addr()])
        .args(["--tls-ca", pki.ca()])
        .args(["--to-tls-cert", live.cert(), "--to-tls-key", live.key()]);
    let relay = Running::start(cmd, 1);
    let through = || {
        let mut cmd = socketkit();
        cmd.args(["connect", &relay.addr()]);
        run(cmd, Vec::new(), DEADLINE)
    };
    let out = through();
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("你好"),
        "{}",
        out.stderr
    );

    install(&pki.client, &live);
    hangup(
        &relay,
        format!(
            "target TLS reloaded: CAs from {}, client certificate {} and {}",
            pki.ca(),
            live.cert(),
            live.key()
        ),
    );
    let out = through();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "你好",
        "{}",
        out.stderr
    );

    // A certificate file that no longer reads keeps the one in force.
    std::fs::write(&live.cert, "renewal in progress\n").expect("write");
    hangup(&relay, "target TLS not reloaded, the old one stays: ");
    let out = through();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "你好",
        "{}",
        out.stderr
    );
}
