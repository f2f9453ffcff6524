//! `forward --sni-route NAME=ENDPOINT`: TLS clients routed by the server name they ask for.
//! On a plain listener the handshake passes through, so each backend answers with its own
//! certificate (checked by clients that verify it, socketkit's and OpenSSL's); on a `tls:`
//! listener the terminated session's name chooses. Clients that are not TLS, or too slow to
//! say hello, are reset; bad routes are usage errors.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::balancer::{sample, start_with_metrics};
use crate::support::certs::{Pair, Pki};
use crate::support::net::{connect, read_to_reset};
use crate::support::process::{Running, command, socketkit};
use crate::support::tools;
use crate::tls_server::output_of;

/// A TLS backend with `pair`'s certificate whose program says `label` and the name the
/// client asked for, behind a PROXY v2 header from the relay.
fn backend(pair: &Pair, label: &str) -> Running {
    let mut cmd = socketkit();
    cmd.args(["serve", "exec", "--shell", "-l", "tls:127.0.0.1:0"])
        .args(["--tls-cert", pair.cert(), "--tls-key", pair.key()])
        .args(["--proxy-protocol", "--trusted-proxy", "127.0.0.1"])
        .args(["--", &format!("echo {label} $SOCKETKIT_TLS_SERVER_NAME")]);
    Running::start(cmd, 1)
}

/// A TLS backend's address as a plain TCP target: the relay passes TLS through to it.
fn tcp(backend: &Running) -> String {
    format!("127.0.0.1:{}", backend.port())
}

/// What `connect` to `relay` gets asking for `name` (none: no SNI, as for an address),
/// verifying the certificate against `pki`'s CA.
fn answer_for(pki: &Pki, relay: &Running, name: Option<&str>) -> (i32, String, String) {
    let mut cmd = socketkit();
    let at = format!("tls:127.0.0.1:{}", relay.port());
    cmd.args(["connect", &at, "--tls-ca", pki.ca()]);
    if let Some(name) = name {
        cmd.args(["--tls-sni", name]);
    }
    let out = output_of(cmd);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.code(), text, out.stderr)
}

#[test]
fn a_plain_listener_passes_tls_through_to_the_target_the_name_chooses() {
    let pki = Pki::new();
    let local = backend(&pki.server, "local");
    let example = backend(&pki.wrong_name, "example");
    let default = backend(&pki.server, "default");
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "127.0.0.1:0", "--to", &tcp(&default)])
        .args(["--sni-route", &format!("localhost={}", tcp(&local))])
        .args(["--sni-route", &format!("*.EXAMPLE={}", tcp(&example))])
        .args([
            "--send-proxy",
            "v2",
            "--tls-handshake-timeout",
            "300ms",
            "-v",
        ])
        .args(["--metrics", "127.0.0.1:0"]);
    let (relay, metrics) = start_with_metrics(cmd);
    let ready = relay.stderr();
    assert!(
        ready.contains(&format!("SNI *.example to tcp:{}", tcp(&example))),
        "{ready}"
    );

    // Each backend's own certificate verifies for the name: the relay did not terminate.
    for (name, answer) in [
        (Some("localhost"), "local localhost\n"),
        (Some("wrong.example"), "example wrong.example\n"),
        (Some("Wrong.Example"), "example Wrong.Example\n"),
        // No SNI (an address): the default, whose certificate names 127.0.0.1.
        (None, "default\n"),
    ] {
        let (code, text, stderr) = answer_for(&pki, &relay, name);
        assert_eq!(code, 0, "{name:?}: {stderr}\nrelay:\n{}", relay.stderr());
        // Names are told apart without regard to case, as DNS does.
        assert_eq!(text.to_lowercase(), answer.to_lowercase(), "{name:?}");
    }
    // A name no route has goes to the default, whose certificate does not name it.
    let (code, _, stderr) = answer_for(&pki, &relay, Some("other.test"));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("certificate is not valid for other.test"),
        "{stderr}"
    );
    // A wildcard stands for one label only.
    let (code, _, stderr) = answer_for(&pki, &relay, Some("a.wrong.example"));
    assert_eq!(code, 1, "{stderr}");

    // OpenSSL's client, as a program that reads its answer would run it.
    if tools::available("openssl") {
        let mut openssl = command(Path::new("openssl"));
        openssl
            .args([
                "s_client",
                "-quiet",
                "-verify_return_error",
                "-CAfile",
                pki.ca(),
            ])
            .args(["-servername", "wrong.example", "-connect", &relay.addr()]);
        let out = output_of(openssl);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "example wrong.example\n",
            "{}",
            out.stderr
        );
    }

    let labels = format!("target=\"tcp:{}\"", tcp(&example));
    let relayed = sample(
        &metrics,
        "socketkit_forward_target_connections_total",
        &labels,
    );
    assert!(relayed >= 2, "{relayed} connections counted to the route");

    // Connected and closed without a byte, as a load balancer's TCP check: closed
    // quietly, not reset, and no warning.
    let mut check = connect(&relay.addr());
    check
        .shutdown(std::net::Shutdown::Write)
        .expect("half-closed");
    assert_eq!(crate::support::net::read_to_end(&mut check), b"");

    // Not TLS: reset, never relayed.
    let mut plain = connect(&relay.addr());
    plain.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("sent");
    assert_eq!(read_to_reset(&mut plain, "a plain-text client"), b"");
    // Silent past the handshake timeout: reset after it.
    let started = Instant::now();
    let mut silent = connect(&relay.addr());
    assert_eq!(read_to_reset(&mut silent, "a silent client"), b"");
    assert!(started.elapsed() >= Duration::from_millis(250));
    relay.wait_for_stderr(
        &[
            "cannot route by server name: the client's first bytes are not TLS",
            "cannot route by server name: the client sent no ClientHello within 300ms",
        ],
        Duration::from_secs(5),
    );
    assert!(
        !relay
            .stderr()
            .contains("the client closed before its ClientHello"),
        "{}",
        relay.stderr()
    );
    // Counted as failed handshakes are; the TCP check is not.
    let refused = format!("listener=\"{}\",reason=\"tls\"", relay.endpoints()[0]);
    assert_eq!(
        sample(&metrics, "socketkit_connections_refused_total", &refused),
        2
    );
}

#[test]
fn a_tls_listener_routes_by_the_name_of_the_session_it_terminated() {
    let pki = Pki::new();
    let mut cmd = socketkit();
    cmd.args(["serve", "greeting", "-l", "127.0.0.1:0"]);
    let greeting = Running::start(cmd, 1);
    let mut cmd = socketkit();
    cmd.args([
        "serve",
        "exec",
        "--shell",
        "-l",
        "127.0.0.1:0",
        "--",
        "echo shop",
    ]);
    let shop = Running::start(cmd, 1);
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "tls:127.0.0.1:0", "--to", &greeting.addr()])
        .args([
            "--tls-cert",
            pki.server.cert(),
            "--tls-key",
            pki.server.key(),
        ])
        .args(["--tls-cert", pki.wrong_name.cert()])
        .args(["--tls-key", pki.wrong_name.key()])
        .args(["--sni-route", &format!("wrong.example={}", shop.addr())]);
    let relay = Running::start(cmd, 1);
    let (code, text, stderr) = answer_for(&pki, &relay, Some("wrong.example"));
    assert_eq!((code, text.as_str()), (0, "shop\n"), "{stderr}");
    let (code, text, stderr) = answer_for(&pki, &relay, Some("localhost"));
    assert_eq!((code, text.as_str()), (0, "你好"), "{stderr}");
}

#[test]
fn routes_that_cannot_work_are_usage_errors() {
    let cases: [(&[&str], &str); 6] = [
        (&["--sni-route", "example.com"], "expected NAME=ENDPOINT"),
        (
            &["--sni-route", "10.0.0.1=127.0.0.1:9"],
            "an IP address is not a server name",
        ),
        (
            &["--sni-route", "shop.*.example=127.0.0.1:9"],
            "invalid server name \"shop.*.example\"",
        ),
        (
            &["--sni-route", "a.test=tls:127.0.0.1:9"],
            "the target cannot be tls: (TLS inside TLS)",
        ),
        (
            &[
                "--sni-route",
                "a.test=127.0.0.1:9",
                "--to",
                "tls:127.0.0.1:10",
            ],
            "--to tls:127.0.0.1:10: a plain listener with --sni-route passes",
        ),
        (&["--sni-route", "a.test=:9"], "needs a host"),
    ];
    for (extra, wanted) in cases {
        let mut cmd = socketkit();
        cmd.args(["forward", "-l", "127.0.0.1:0", "--to", "127.0.0.1:9"])
            .args(extra);
        let out = output_of(cmd);
        assert_eq!(out.code(), 2, "{extra:?}: {}", out.stderr);
        assert!(out.stderr.starts_with("error: "), "{}", out.stderr);
        assert!(out.stderr.contains(wanted), "{extra:?}: {}", out.stderr);
    }
    let mut cmd = socketkit();
    cmd.args([
        "forward",
        "-l",
        "udp:127.0.0.1:0",
        "--to",
        "udp:127.0.0.1:9",
    ])
    .args(["--sni-route", "a.test=udp:127.0.0.1:10"]);
    let out = output_of(cmd);
    assert_eq!(out.code(), 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("--sni-route applies to stream forwarding only"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_route_file_is_read_again_on_sighup_and_a_bad_one_changes_nothing() {
    let pki = Pki::new();
    let first = backend(&pki.server, "first");
    let second = backend(&pki.server, "second");
    let default = backend(&pki.server, "default");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("routes");
    let write = |text: String| std::fs::write(&file, text).expect("write the routes");
    write(format!("# by name\nlocalhost {}\n\n", tcp(&first)));
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "127.0.0.1:0", "--to", &tcp(&default)])
        .arg("--sni-route-file")
        .arg(&file)
        .args(["--send-proxy", "v2"]);
    let relay = Running::start(cmd, 1);
    let answer = || {
        let (code, text, stderr) = answer_for(&pki, &relay, Some("localhost"));
        assert_eq!(code, 0, "{stderr}\nrelay:\n{}", relay.stderr());
        text
    };
    assert_eq!(answer(), "first localhost\n");

    write(format!("localhost={}\n", tcp(&second)));
    relay.signal(libc::SIGHUP);
    let said = format!(
        "SNI routes reloaded from {}: 1 (added localhost to tcp:{}; removed localhost to tcp:{})",
        file.display(),
        tcp(&second),
        tcp(&first)
    );
    relay.wait_for_stderr(&[&said], Duration::from_secs(5));
    assert_eq!(answer(), "second localhost\n");

    // TLS inside TLS, on line 2: refused whole, the routes in force stay.
    write(format!(
        "a.test {}\nb.test tls:{}\n",
        tcp(&first),
        tcp(&first)
    ));
    relay.signal(libc::SIGHUP);
    let said = format!(
        "SNI routes not reloaded, the old ones stay: invalid --sni-route-file {}: line 2:",
        file.display()
    );
    relay.wait_for_stderr(&[&said], Duration::from_secs(5));
    assert_eq!(answer(), "second localhost\n");

    // No route: every client to --to.
    write("# none for now\n".to_owned());
    relay.signal(libc::SIGHUP);
    relay.wait_for_stderr(
        &["reloaded from", ": 0 (removed localhost"],
        Duration::from_secs(5),
    );
    assert_eq!(answer(), "default localhost\n");
}

#[test]
fn a_name_given_twice_pools_its_targets_and_fails_over_between_them() {
    let pki = Pki::new();
    let first = backend(&pki.server, "first");
    let second = backend(&pki.server, "second");
    let default = backend(&pki.server, "default");
    let dead = crate::support::net::free_port();
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "127.0.0.1:0", "--to", &tcp(&default)])
        .args(["--sni-route", &format!("localhost=127.0.0.1:{dead}")])
        .args(["--sni-route", &format!("localhost={}", tcp(&first))])
        .args(["--sni-route", &format!("LOCALHOST={}", tcp(&second))])
        .args(["--send-proxy", "v2"]);
    let relay = Running::start(cmd, 1);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let (code, text, stderr) = answer_for(&pki, &relay, Some("localhost"));
        assert_eq!(code, 0, "{stderr}\nrelay:\n{}", relay.stderr());
        seen.insert(text);
    }
    // In turn over the two that answer; the dead one passed its clients on, never the
    // default.
    let wanted: std::collections::BTreeSet<String> = ["first localhost\n", "second localhost\n"]
        .map(String::from)
        .into();
    assert_eq!(seen, wanted);
    relay.assert_said(&format!("cannot reach tcp:127.0.0.1:{dead}"));
}

#[test]
fn health_checks_take_a_routes_dead_target_out_by_connection_only() {
    let pki = Pki::new();
    let live = backend(&pki.server, "live");
    let default = backend(&pki.server, "default");
    let dead = crate::support::net::free_port();
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "127.0.0.1:0", "--to", &tcp(&default)])
        .args(["--sni-route", &format!("localhost=127.0.0.1:{dead}")])
        .args(["--sni-route", &format!("localhost={}", tcp(&live))])
        .args(["--send-proxy", "v2", "--check-interval", "200ms"])
        // HTTP to --to's target only: the routes' targets speak their clients' TLS.
        .args(["--check-http", "/"]);
    let relay = Running::start(cmd, 1);
    relay.wait_for_stderr(
        &[
            &format!("health check: tcp:127.0.0.1:{dead} is down: connection refused"),
            &format!("health check: tcp:{} is down", tcp(&default)),
        ],
        Duration::from_secs(5),
    );
    assert!(
        !relay
            .stderr()
            .contains(&format!("health check: tcp:{} is down", tcp(&live))),
        "{}",
        relay.stderr()
    );
    // The dead target, checked down, costs the route's clients no failed attempt.
    let (code, text, stderr) = answer_for(&pki, &relay, Some("localhost"));
    assert_eq!((code, text.as_str()), (0, "live localhost\n"), "{stderr}");
}
