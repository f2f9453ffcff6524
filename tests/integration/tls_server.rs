//! The server side of TLS against real clients that are not socketkit: `serve`, `listen`
//! and `forward -l` on `tls:` with OpenSSL's s_client (TLS 1.2 and 1.3, ALPN, client
//! certificates), socat's OPENSSL address, Python's ssl module, and curl through
//! `forward -l tls: --to` an HTTP server. The keys and certificates it loads: `tls_keys`.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::certs::{Pair, Pki};
use crate::support::net::{free_port, wait_until_listening};
use crate::support::process::{DEADLINE, Running, command, lines_of, run, socketkit};
use crate::support::tls_peers::{python_client, s_client};
use crate::support::tools;

/// How long an answer may take on a loaded machine.
pub(super) const ANSWER: Duration = Duration::from_secs(5);

/// `socketkit serve SERVICE -l tls:127.0.0.1:0` with `pair` and `extra` options.
pub(super) fn serve_tls(service: &str, pair: &Pair, extra: &[&str]) -> Running {
    let mut cmd = socketkit();
    cmd.args(["serve", service, "-l", "tls:127.0.0.1:0"])
        .args(["--tls-cert", pair.cert(), "--tls-key", pair.key()])
        .args(extra);
    Running::start(cmd, 1)
}

/// `curl https://HOST:PORT/PATH`, HOST resolved to 127.0.0.1 and verified against `pki`'s
/// CA (the name is the SNI curl sends).
pub(super) fn curl_https(
    pki: &Pki,
    host: &str,
    port: u16,
    path: &str,
) -> crate::support::process::Output {
    let mut curl = command(Path::new("curl"));
    curl.args([
        "--silent",
        "--show-error",
        "--max-time",
        "10",
        "--cacert",
        pki.ca(),
    ])
    .arg("--resolve")
    .arg(format!("{host}:{port}:127.0.0.1"))
    .arg(format!("https://{host}:{port}{path}"));
    output_of(curl)
}

/// Runs `cmd` with no input to its end.
pub(super) fn output_of(cmd: Command) -> crate::support::process::Output {
    run(cmd, Vec::new(), DEADLINE)
}

#[test]
fn s_client_gets_the_greeting_over_tls13_and_tls12() {
    let pki = Pki::new();
    let server = serve_tls("greeting", &pki.server, &[]);
    for (flag, version) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
        let Some(mut cmd) = s_client(&pki, server.port(), &[flag, "-brief", "-ign_eof"]) else {
            return;
        };
        cmd.arg("-quiet");
        let out = output_of(cmd);
        assert_eq!(out.code(), 0, "{}", out.stderr);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "你好", "{version}");
        assert!(
            out.stderr.contains(&format!("Protocol version: {version}")),
            "{}",
            out.stderr
        );
        assert!(out.stderr.contains("Verification: OK"), "{}", out.stderr);
    }
}

#[test]
fn s_client_echoes_line_by_line() {
    let pki = Pki::new();
    let server = serve_tls("echo", &pki.server, &[]);
    let Some(mut cmd) = s_client(&pki, server.port(), &["-quiet"]) else {
        return;
    };
    cmd.arg("-ign_eof");
    let mut client = Running::start(cmd, 0);
    let lines = lines_of(client.take_stdout());
    let mut stdin = client.take_stdin();
    for round in 0..20 {
        let line = format!("line {round} through TLS\n");
        stdin.write_all(line.as_bytes()).expect("s_client stdin");
        let got = lines.recv_timeout(ANSWER).unwrap_or_else(|_| {
            panic!(
                "round {round}: no echo; s_client stderr:\n{}",
                client.stderr()
            )
        });
        assert_eq!(got, line.as_bytes());
    }
}

#[test]
fn alpn_is_chosen_from_the_servers_list() {
    let pki = Pki::new();
    let server = serve_tls(
        "greeting",
        &pki.server,
        &["--tls-alpn", "h2", "--tls-alpn", "http/1.1", "-v"],
    );
    let Some(cmd) = s_client(&pki, server.port(), &["-alpn", "http/1.1", "-ign_eof"]) else {
        return;
    };
    let out = output_of(cmd);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ALPN protocol: http/1.1"), "{text}");
    assert!(text.contains("你好"), "{text}");
    // A client offering none of them is refused, and the log says why.
    let Some(cmd) = s_client(&pki, server.port(), &["-alpn", "gopher", "-ign_eof"]) else {
        return;
    };
    let out = output_of(cmd);
    assert_ne!(out.code(), 0);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("你好"));
    server.wait_for_stderr(&["no application protocol (ALPN) in common"], ANSWER);
}

#[test]
fn mutual_tls_admits_only_clients_with_a_certificate_from_the_ca() {
    let pki = Pki::new();
    let server = serve_tls(
        "greeting",
        &pki.server,
        &["--tls-client-ca", pki.ca(), "-v"],
    );
    let with = [
        "-cert",
        pki.client.cert(),
        "-key",
        pki.client.key(),
        "-ign_eof",
    ];
    let Some(cmd) = s_client(&pki, server.port(), &with) else {
        return;
    };
    let out = output_of(cmd);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("你好"),
        "{}",
        out.stderr
    );

    // A certificate from another CA, and none at all, are refused with reason tls.
    let stranger = [
        "-cert",
        pki.stranger.cert(),
        "-key",
        pki.stranger.key(),
        "-ign_eof",
    ];
    for args in [&stranger[..], &["-ign_eof"][..]] {
        let Some(cmd) = s_client(&pki, server.port(), args) else {
            return;
        };
        let out = output_of(cmd);
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("你好"),
            "{args:?}"
        );
    }
    server.wait_for_stderr(&["refused: TLS handshake failed: certificate"], ANSWER);
    server.wait_for_stderr(
        &["the peer sent no certificate, and one is required"],
        ANSWER,
    );
    server.wait_for_stderr(&["reason=\"tls\""], ANSWER);
}

#[test]
fn python_ssl_clients_see_close_notify_from_greeting_and_echo() {
    let pki = Pki::new();
    let greeting = serve_tls("greeting", &pki.server, &[]);
    let Some(cmd) = python_client(&pki, greeting.port(), "read", "") else {
        return;
    };
    // The script reads to close_notify and fails on a ragged EOF.
    let out = output_of(cmd);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "你好");

    let echo = serve_tls("echo", &pki.server, &[]);
    let Some(cmd) = python_client(&pki, echo.port(), "echo", "echo me over TLS") else {
        return;
    };
    let out = output_of(cmd);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "echo me over TLS");
}

#[test]
fn socat_openssl_client_half_closes_and_gets_every_byte_back() {
    let pki = Pki::new();
    if !tools::available("socat") {
        return;
    }
    let server = serve_tls("echo", &pki.server, &[]);
    let mut cmd = command(Path::new("socat"));
    cmd.args(["-t", "5", "-"]).arg(format!(
        "OPENSSL:127.0.0.1:{},cafile={},commonname=localhost",
        server.port(),
        pki.ca()
    ));
    let data = crate::support::net::payload(200_000);
    let out = run(cmd, data.clone(), DEADLINE);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout.len(), data.len());
    assert!(out.stdout == data, "every byte came back in order");
}

#[test]
fn forward_terminating_tls_passes_close_notify_on_as_a_half_close() {
    let pki = Pki::new();
    if !tools::available("socat") {
        return;
    }
    // socat (TLS) → forward -l tls: → serve echo (plain): socat's close_notify must reach the
    // echo server as a FIN, and the echo server's FIN come back as close_notify.
    let mut echo = socketkit();
    echo.args(["serve", "echo", "-l", "127.0.0.1:0"]);
    let echo = Running::start(echo, 1);
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "tls:127.0.0.1:0", "--to", &echo.addr()])
        .args([
            "--tls-cert",
            pki.server.cert(),
            "--tls-key",
            pki.server.key(),
        ]);
    let relay = Running::start(cmd, 1);
    let mut socat = command(Path::new("socat"));
    socat.args(["-t", "5", "-"]).arg(format!(
        "OPENSSL:127.0.0.1:{},cafile={},commonname=localhost",
        relay.port(),
        pki.ca()
    ));
    let data = crate::support::net::payload(300_000);
    let out = run(socat, data.clone(), DEADLINE);
    assert_eq!(out.code(), 0, "{}\nrelay:\n{}", out.stderr, relay.stderr());
    assert!(
        out.stdout == data,
        "every byte came back ({} of {})",
        out.stdout.len(),
        data.len()
    );
}

#[test]
fn curl_fetches_through_forward_terminating_tls_for_two_sites() {
    let pki = Pki::new();
    if !tools::available("curl") || !tools::available("python3") {
        return;
    }
    let site = tempfile::tempdir().expect("temp dir");
    std::fs::write(site.path().join("hello.txt"), "hello over https\n").expect("write");
    let port = free_port();
    let mut http = command(Path::new("python3"));
    http.args([
        "-m",
        "http.server",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
    ])
    .arg("--directory")
    .arg(site.path());
    let _http = Running::start(http, 0);
    wait_until_listening(port);

    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "tls:127.0.0.1:0", "--to"])
        .arg(format!("127.0.0.1:{port}"))
        .args([
            "--tls-cert",
            pki.server.cert(),
            "--tls-key",
            pki.server.key(),
        ])
        // A second site on the same listener, chosen by the name curl asks for.
        .args([
            "--tls-cert",
            pki.wrong_name.cert(),
            "--tls-key",
            pki.wrong_name.key(),
        ])
        .args(["--tls-alpn", "http/1.1"]);
    let relay = Running::start(cmd, 1);
    for host in ["localhost", "wrong.example"] {
        let out = curl_https(&pki, host, relay.port(), "/hello.txt");
        assert_eq!(
            out.code(),
            0,
            "{host}: {}\nrelay:\n{}",
            out.stderr,
            relay.stderr()
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello over https\n");
    }
}

#[test]
fn listen_tls_answers_s_client_both_ways() {
    let pki = Pki::new();
    let mut cmd = socketkit();
    cmd.args(["listen", "tls:127.0.0.1:0"]).args([
        "--tls-cert",
        pki.server.cert(),
        "--tls-key",
        pki.server.key(),
    ]);
    let mut listener = Running::start(cmd, 1);
    let Some(mut cmd) = s_client(&pki, listener.port(), &["-quiet", "-ign_eof"]) else {
        return;
    };
    cmd.arg("-tls1_2");
    let mut client = Running::start(cmd, 0);
    let from_client = lines_of(listener.take_stdout());
    let from_listener = lines_of(client.take_stdout());
    let mut client_in = client.take_stdin();
    let mut listener_in = listener.take_stdin();
    client_in.write_all(b"to the listener\n").expect("write");
    assert_eq!(
        from_client
            .recv_timeout(ANSWER)
            .expect("the listener printed it"),
        b"to the listener\n"
    );
    listener_in.write_all(b"to the client\n").expect("write");
    assert_eq!(
        from_listener
            .recv_timeout(ANSWER)
            .expect("s_client printed it"),
        b"to the client\n"
    );
    // The listener's end of input: close_notify; s_client then closes, and listen exits 0.
    drop(listener_in);
    assert_eq!(
        listener.wait(DEADLINE).code(),
        Some(0),
        "{}",
        listener.stderr()
    );
}

/// Several `--tls-cert`/`--tls-key` pairs: each client gets the certificate of the name it
/// asks for (SNI), and the first one when it asks for a name none has.
#[test]
fn several_certificates_are_chosen_by_the_name_the_client_asks_for() {
    let pki = Pki::new();
    let second = [
        "--tls-cert",
        pki.wrong_name.cert(),
        "--tls-key",
        pki.wrong_name.key(),
    ];
    let server = serve_tls("greeting", &pki.server, &second);
    let asking_for = |name: &str| {
        let mut cmd = socketkit();
        cmd.args([
            "connect",
            &server.addr(),
            "--tls-ca",
            pki.ca(),
            "--tls-sni",
            name,
        ]);
        output_of(cmd)
    };
    // Each name is verified against the certificate that names it.
    for name in ["wrong.example", "localhost", "WRONG.example"] {
        let out = asking_for(name);
        assert_eq!(out.code(), 0, "{name}: {}", out.stderr);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "你好", "{name}");
    }
    // A name neither has gets the first, which does not name it.
    let out = asking_for("other.example");
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("certificate is not valid for other.example"),
        "{}",
        out.stderr
    );

    // Pairs that do not pair up are a usage error.
    let mut cmd = socketkit();
    cmd.args(["serve", "-l", "tls:127.0.0.1:0"])
        .args([
            "--tls-cert",
            pki.server.cert(),
            "--tls-key",
            pki.server.key(),
        ])
        .args(["--tls-cert", pki.wrong_name.cert()]);
    let out = output_of(cmd);
    assert_eq!(out.code(), 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("--tls-cert and --tls-key pair up in order: 2 certificates and 1 key"),
        "{}",
        out.stderr
    );
}

/// `serve exec` on a mutual-TLS listener tells the program who the client is; the server's
/// own environment cannot pass for it.
#[test]
fn exec_knows_the_tls_session_and_the_client_certificate() {
    let pki = Pki::new();
    let script = "printf '%s|%s|%s|%s\\n' \"$SOCKETKIT_TLS_VERSION\" \"$SOCKETKIT_TLS_SERVER_NAME\" \"$SOCKETKIT_TLS_CLIENT_SUBJECT\" \"$SOCKETKIT_TLS_CLIENT_FINGERPRINT\"";
    let serve = |listen: &str, extra: &[&str]| {
        let mut cmd = socketkit();
        cmd.env("SOCKETKIT_TLS_CLIENT_SUBJECT", "CN=forged")
            .args(["serve", "exec", "-l", listen])
            .args(extra)
            .args(["--", "sh", "-c", script]);
        Running::start(cmd, 1)
    };
    let server = serve(
        "tls:127.0.0.1:0",
        &[
            "--tls-cert",
            pki.server.cert(),
            "--tls-key",
            pki.server.key(),
            "--tls-client-ca",
            pki.ca(),
        ],
    );
    let mut cmd = socketkit();
    cmd.args(["connect", &server.addr(), "--tls-ca", pki.ca()])
        .args(["--tls-sni", "localhost"])
        .args([
            "--tls-cert",
            pki.client.cert(),
            "--tls-key",
            pki.client.key(),
        ]);
    let out = output_of(cmd);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let client = socketkit::tls::load_certificates(&pki.client.cert).expect("the client's");
    let fingerprint = socketkit::tls::Fingerprint::of(client[0].as_ref());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("TLSv1.3|localhost|CN=client|{fingerprint}\n")
    );

    // Without TLS the variables are not there, whatever the server's environment holds.
    let plain = serve("127.0.0.1:0", &[]);
    let mut cmd = socketkit();
    cmd.args(["connect", &plain.addr()]);
    let out = output_of(cmd);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "|||\n",
        "{}",
        out.stderr
    );
}

/// `--tls-client-optional`: a client without a certificate is admitted as anonymous, one
/// with a certificate from the CA is named, and one with another certificate is refused.
#[test]
fn optional_client_certificates_admit_anonymous_clients_and_name_the_others() {
    let pki = Pki::new();
    let script = "printf '[%s]\\n' \"$SOCKETKIT_TLS_CLIENT_SUBJECT\"";
    let optional = ["--tls-client-ca", pki.ca(), "--tls-client-optional"];
    let server = serve_tls(
        "exec",
        &pki.server,
        &[&optional[..], &["--", "sh", "-c", script]].concat(),
    );
    let client = |pair: Option<&Pair>| {
        let mut cmd = socketkit();
        cmd.args(["connect", &server.addr(), "--tls-ca", pki.ca()]);
        if let Some(pair) = pair {
            cmd.args(["--tls-cert", pair.cert(), "--tls-key", pair.key()]);
        }
        output_of(cmd)
    };
    let anonymous = client(None);
    assert_eq!(
        String::from_utf8_lossy(&anonymous.stdout),
        "[]\n",
        "{}",
        anonymous.stderr
    );
    let named = client(Some(&pki.client));
    assert_eq!(
        String::from_utf8_lossy(&named.stdout),
        "[CN=client]\n",
        "{}",
        named.stderr
    );
    let stranger = client(Some(&pki.stranger));
    assert_ne!(stranger.code(), 0, "{}", stranger.stderr);
    assert!(
        stranger.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&stranger.stdout)
    );
}
