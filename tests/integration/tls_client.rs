//! The client side of TLS against real servers that are not socketkit: `connect tls:` with
//! OpenSSL's s_server, socat's OPENSSL-LISTEN and Python's ssl module — TLS 1.2 and 1.3,
//! client certificates, ALPN, close_notify in both directions, a truncated stream, and each
//! certificate failure as its one `error:` line (`forward --to tls:`: tls_forward_target.rs).

use std::io::Write;
use std::time::Duration;

use crate::support::certs::{Pair, Pki};
use crate::support::net::{free_port, wait_until_listening};
use crate::support::process::{DEADLINE, Running, lines_of, run, socketkit};
use crate::support::tls_peers::{python_server, s_server};
use crate::support::tools;

/// How long an answer may take through the bridge on a loaded machine.
const ANSWER: Duration = Duration::from_secs(5);

fn connect_tls(port: u16, args: &[&str]) -> Running {
    let mut cmd = socketkit();
    cmd.arg("connect")
        .arg(format!("tls:127.0.0.1:{port}"))
        .args(args);
    Running::start(cmd, 0)
}

/// One exchange through `connect` with a server whose stdin/stdout are the other end (an
/// s_server or socat): our line goes in, theirs comes back, then we close and so do they.
fn exchange(server: &mut Running, client: &mut Running) {
    let server_lines = lines_of(server.take_stdout());
    let client_lines = lines_of(client.take_stdout());
    let mut client_in = client.take_stdin();
    client_in
        .write_all(b"ping from socketkit\n")
        .expect("client stdin");
    let got = server_lines.recv_timeout(ANSWER).unwrap_or_else(|_| {
        panic!(
            "the server saw nothing; client stderr:\n{}\nserver stderr:\n{}",
            client.stderr(),
            server.stderr()
        )
    });
    assert_eq!(got, b"ping from socketkit\n");
    let mut server_in = server.take_stdin();
    server_in
        .write_all(b"pong from the server\n")
        .expect("server stdin");
    let got = client_lines
        .recv_timeout(ANSWER)
        .unwrap_or_else(|_| panic!("no answer came out; stderr:\n{}", client.stderr()));
    assert_eq!(got, b"pong from the server\n");
    // Our end of input: close_notify and a half-close; the server then closes its side.
    drop(client_in);
    let status = client.wait(DEADLINE);
    assert_eq!(status.code(), Some(0), "stderr:\n{}", client.stderr());
    drop(server_in);
}

#[test]
fn connect_talks_tls13_and_tls12_with_openssl_s_server() {
    let pki = Pki::new();
    for version in ["-tls1_3", "-tls1_2"] {
        let Some((mut server, port)) = s_server(&pki.server, &[version]) else {
            return;
        };
        let mut client = connect_tls(port, &["--tls-ca", pki.ca()]);
        exchange(&mut server, &mut client);
        assert_eq!(server.wait(DEADLINE).code(), Some(0), "{version}");
    }
}

#[test]
fn connect_presents_a_client_certificate_to_a_server_that_requires_one() {
    let pki = Pki::new();
    let require = ["-Verify", "1", "-verify_return_error", "-CAfile", pki.ca()];
    let Some((mut server, port)) = s_server(&pki.server, &require) else {
        return;
    };
    let mut client = connect_tls(
        port,
        &[
            "--tls-ca",
            pki.ca(),
            "--tls-cert",
            pki.client.cert(),
            "--tls-key",
            pki.client.key(),
        ],
    );
    exchange(&mut server, &mut client);

    // Without one the server refuses, and we say so.
    let Some((_server, port)) = s_server(&pki.server, &require) else {
        return;
    };
    let out = run_connect(port, &["--tls-ca", pki.ca()], b"hello\n");
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert_one_error(&out.stderr, "certificate");
}

/// Runs `connect` to `port` to completion with `input` on stdin.
fn run_connect(port: u16, args: &[&str], input: &[u8]) -> crate::support::process::Output {
    let mut cmd = socketkit();
    cmd.arg("connect")
        .arg(format!("tls:127.0.0.1:{port}"))
        .args(args);
    run(cmd, input.to_vec(), DEADLINE)
}

/// stderr is one `error:` line that contains `words`.
fn assert_one_error(stderr: &str, words: &str) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected:\n{stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(lines[0].contains(words), "{words:?} expected in: {stderr}");
}

#[test]
fn each_bad_certificate_is_one_error_line_in_words() {
    let pki = Pki::new();
    let cases: [(&Pair, &[&str], &str); 5] = [
        (
            &pki.expired,
            &[],
            "certificate has expired: it was valid until 2020-12-31",
        ),
        (&pki.stranger, &[], "certificate has an unknown issuer"),
        (
            &pki.wrong_name,
            &[],
            "certificate is not valid for 127.0.0.1 (it names wrong.example)",
        ),
        (
            &pki.server,
            &["--tls-sni", "other.example"],
            "certificate is not valid for other.example (it names localhost, 127.0.0.1, ::1)",
        ),
        // The system's store does not know our test CA.
        (
            &pki.server,
            &["--no-ca"],
            "certificate has an unknown issuer",
        ),
    ];
    for (pair, extra, words) in cases {
        let Some((_server, port)) = s_server(pair, &[]) else {
            return;
        };
        let mut args: Vec<&str> = vec!["--tls-ca", pki.ca()];
        if extra == ["--no-ca"] {
            args.clear();
        } else {
            args.extend_from_slice(extra);
        }
        let out = run_connect(port, &args, b"");
        assert_eq!(out.code(), 1, "{words}: {}", out.stderr);
        let want = format!("error: cannot connect to tls:127.0.0.1:{port}: {words}");
        assert!(
            out.stderr.starts_with(&want),
            "want {want:?}\ngot {}",
            out.stderr
        );
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        assert!(out.stdout.is_empty());
    }
}

/// A trusted certificate with the issuer's name but another kind of key (as a system
/// store's `localhost` snakeoil can be) was reported as rustls's debug text.
#[test]
fn an_issuer_namesake_with_another_key_is_named_in_words() {
    let pki = Pki::new();
    let namesake = pki.namesake_ca();
    let Some((_server, port)) = s_server(&pki.server, &[]) else {
        return;
    };
    let ca = namesake.to_str().expect("temp paths are UTF-8");
    let out = run_connect(port, &["--tls-ca", ca], b"");
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert_eq!(
        out.stderr,
        format!(
            "error: cannot connect to tls:127.0.0.1:{port}: certificate is signed with ECDSA \
             with SHA-256 but the trusted certificate named as its issuer has an Ed25519 key: \
             it is not signed by a trusted CA\n"
        )
    );
}

#[test]
fn the_server_name_can_differ_from_the_host() {
    let pki = Pki::new();
    let Some((mut server, port)) = s_server(&pki.server, &[]) else {
        return;
    };
    let mut client = connect_tls(port, &["--tls-ca", pki.ca(), "--tls-sni", "localhost"]);
    exchange(&mut server, &mut client);
}

#[test]
fn no_cipher_in_common_is_named() {
    let pki = Pki::new();
    // A CBC suite only: rustls offers AEAD suites alone.
    let old = ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA"];
    let Some((_server, port)) = s_server(&pki.server, &old) else {
        return;
    };
    let out = run_connect(port, &["--tls-ca", pki.ca()], b"");
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert_one_error(
        &out.stderr,
        &format!(
            "cannot connect to tls:127.0.0.1:{port}: the peer refused the handshake (handshake failure alert"
        ),
    );
}

#[test]
fn insecure_skips_verification_and_says_so_once() {
    let pki = Pki::new();
    let Some((mut server, port)) = s_server(&pki.stranger, &[]) else {
        return;
    };
    let mut client = connect_tls(port, &["--tls-insecure"]);
    exchange(&mut server, &mut client);
    let warnings = client.stderr().matches("not verified").count();
    assert_eq!(warnings, 1, "{}", client.stderr());
}

#[test]
fn a_stream_cut_without_close_notify_is_an_error_after_its_bytes() {
    let pki = Pki::new();
    let Some(server) = python_server(&pki.server, "truncate", "partial data") else {
        return;
    };
    // stdin stays open: our close_notify would reach the server unread when it closes,
    // and turn its close into a reset.
    let mut client = connect_tls(server.port(), &["--tls-ca", pki.ca()]);
    let _stdin = client.take_stdin();
    let stdout = crate::support::process::drain(client.take_stdout());
    let status = client.wait(DEADLINE);
    assert_eq!(
        stdout.join().unwrap_or_default(),
        b"partial data",
        "the bytes that came are kept"
    );
    assert_eq!(status.code(), Some(1), "{}", client.stderr());
    let stderr = client.stderr();
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].ends_with("without a TLS close_notify, so the data may be truncated"),
        "{stderr}"
    );
}

#[test]
fn close_notify_ends_the_stream_cleanly_both_ways() {
    let pki = Pki::new();
    let Some(mut server) = python_server(&pki.server, "clean", "complete\n") else {
        return;
    };
    let out = run_connect(server.port(), &["--tls-ca", pki.ca()], b"");
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout, b"complete\n");
    // The Python side fails on a ragged EOF: it saw our close_notify.
    assert_eq!(server.wait(DEADLINE).code(), Some(0), "{}", server.stderr());
}

#[test]
fn alpn_is_offered_and_negotiated() {
    let pki = Pki::new();
    for (offer, want) in [
        (Some("socketkit-test"), "alpn=socketkit-test\n"),
        (None, "alpn=None\n"),
    ] {
        let Some(server) = python_server(&pki.server, "alpn", "") else {
            return;
        };
        let mut args = vec!["--tls-ca", pki.ca()];
        if let Some(proto) = offer {
            args.extend(["--tls-alpn", proto]);
        }
        let out = run_connect(server.port(), &args, b"");
        assert_eq!(out.code(), 0, "{}", out.stderr);
        assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    }
}

#[test]
fn connect_tls_answers_a_peer_that_waits() {
    // The cli_stdio_pipes rounds over TLS: every byte that arrived is readable at once.
    let pki = Pki::new();
    let Some(mut server) = python_server(&pki.server, "ask", "100") else {
        return;
    };
    let mut client = connect_tls(server.port(), &["--tls-ca", pki.ca()]);
    let lines = lines_of(client.take_stdout());
    let mut stdin = client.take_stdin();
    for round in 0..100 {
        let got = lines.recv_timeout(ANSWER).unwrap_or_else(|_| {
            panic!(
                "round {round}: no question came out; stderr:\n{}",
                client.stderr()
            )
        });
        assert_eq!(got, format!("question {round}\n").as_bytes());
        stdin
            .write_all(format!("answer {round}\n").as_bytes())
            .expect("answer");
    }
    assert_eq!(server.wait(DEADLINE).code(), Some(0), "{}", server.stderr());
    drop(stdin);
    assert_eq!(client.wait(DEADLINE).code(), Some(0), "{}", client.stderr());
}

#[test]
fn a_peer_that_closes_after_the_answer_gets_close_notify_though_the_input_stays_open() {
    // The peer reads the one answer and sends close_notify; the program's input stays
    // open, quiet. The sending waits for input then, and ends at its pause: no reset. (A
    // pump thread woken a little late at that pause was taken for a peer that stopped
    // reading, and reset the connection: one run in eight, so many run, eight at a time.)
    let pki = Pki::new();
    for batch in 0..3 {
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    let Some(mut server) = python_server(&pki.server, "ask", "1") else {
                        return;
                    };
                    let mut client = connect_tls(server.port(), &["--tls-ca", pki.ca()]);
                    let lines = lines_of(client.take_stdout());
                    let mut stdin = client.take_stdin();
                    let got = lines.recv_timeout(ANSWER).unwrap_or_else(|_| {
                        panic!("batch {batch}: no question; stderr:\n{}", client.stderr())
                    });
                    assert_eq!(got, b"question 0\n");
                    stdin.write_all(b"answer 0\n").expect("answer");
                    let server_end = server.wait(DEADLINE);
                    drop(stdin);
                    let client_end = client.wait(DEADLINE);
                    assert_eq!(server_end.code(), Some(0), "{}", server.stderr());
                    assert_eq!(client_end.code(), Some(0), "{}", client.stderr());
                });
            }
        });
    }
}

#[test]
fn connect_talks_to_socat_openssl_listen() {
    let pki = Pki::new();
    if !tools::available("socat") {
        return;
    }
    let port = free_port();
    let mut cmd = crate::support::process::command(std::path::Path::new("socat"));
    cmd.arg(format!(
        "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,cert={},key={},verify=0",
        pki.server.cert(),
        pki.server.key()
    ))
    .arg("EXEC:cat");
    let _socat = Running::start(cmd, 0);
    wait_until_listening(port);
    let out = run_connect(port, &["--tls-ca", pki.ca()], b"through socat and back\n");
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout, b"through socat and back\n");
}

#[test]
fn tls_to_a_plain_server_says_it_does_not_speak_tls() {
    let mut cmd = socketkit();
    cmd.args(["serve", "greeting", "-l", "127.0.0.1:0"]);
    let server = Running::start(cmd, 1);
    let out = run_connect(server.port(), &["--tls-insecure"], b"");
    assert_eq!(out.code(), 1, "{}", out.stderr);
    let error = out
        .stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or("");
    assert!(
        error.contains("the peer does not speak TLS"),
        "{}",
        out.stderr
    );
}

/// `serve --tls-self-signed` prints its certificate's fingerprint; `connect
/// --tls-fingerprint` with it talks to that server (in any usual spelling of the
/// fingerprint) and refuses any other certificate with one line naming both; a malformed
/// fingerprint is a usage error.
#[test]
fn a_pinned_fingerprint_accepts_that_certificate_and_no_other() {
    let mut cmd = socketkit();
    cmd.args([
        "serve",
        "echo",
        "--tls-self-signed",
        "-l",
        "tls:127.0.0.1:0",
    ]);
    let server = Running::start(cmd, 1);
    server.wait_for_stderr(&["SHA-256 fingerprint "], DEADLINE);
    let log = server.stderr();
    let pinned = log
        .split("SHA-256 fingerprint ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no fingerprint in: {log}"))
        .to_owned();
    let port = server.port();
    for spelling in [pinned.clone(), pinned.replace(':', "").to_lowercase()] {
        let out = run_connect(port, &["--tls-fingerprint", &spelling], b"pinned\n");
        assert_eq!(out.code(), 0, "{spelling}: {}", out.stderr);
        assert_eq!(out.stdout, b"pinned\n");
        assert!(out.stderr.is_empty(), "{}", out.stderr);
    }
    // Another certificate's: the first byte changed.
    let first = if pinned.starts_with("00") { "01" } else { "00" };
    let other = format!("{first}{}", &pinned[2..]);
    let out = run_connect(port, &["--tls-fingerprint", &other], b"");
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert_one_error(
        &out.stderr,
        &format!("certificate has SHA-256 fingerprint {pinned}, not the pinned {other}"),
    );
    assert!(out.stdout.is_empty());
    let out = run_connect(port, &["--tls-fingerprint", "12:34"], b"");
    assert_eq!(out.code(), 2, "{}", out.stderr);
    assert_one_error(
        &out.stderr,
        "invalid fingerprint '12:34' for --tls-fingerprint: a SHA-256 fingerprint is 32 bytes",
    );
}

/// `connect -v` says what the session is: version, cipher suite, ALPN, and the server's
/// certificate (subject, issuer, end, fingerprint), as `ncat -v` and `s_client` do.
#[test]
fn connect_verbose_describes_the_session_and_the_servers_certificate() {
    let pki = Pki::new();
    let server = super::tls_server::serve_tls("greeting", &pki.server, &["--tls-alpn", "x-test"]);
    let mut cmd = socketkit();
    cmd.args(["connect", "-v", &server.addr(), "--tls-ca", pki.ca()])
        .args(["--tls-alpn", "x-test"]);
    let out = run(cmd, Vec::new(), DEADLINE);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "你好",
        "{}",
        out.stderr
    );
    let served = socketkit::tls::load_certificates(&pki.server.cert).expect("the server's");
    let fingerprint = socketkit::tls::Fingerprint::of(served[0].as_ref());
    let said = out
        .stderr
        .lines()
        .find(|line| line.contains("tls: TLSv1.3 TLS13_"))
        .unwrap_or_else(|| panic!("no session line in:\n{}", out.stderr));
    assert!(
        said.contains(
            ", ALPN x-test; certificate CN=server issued by CN=socketkit test CA, valid until "
        ),
        "{said}"
    );
    assert!(said.ends_with(&format!("SHA-256 {fingerprint}")), "{said}");
}

/// A `tls:` server that shares no ALPN protocol with a TLS 1.3 client tells it so with the
/// fatal alert (RFC 7301), sent after its ServerHello: the client names the reason, where a
/// bare close would read as a cut connection.
#[test]
fn a_server_without_a_common_alpn_protocol_sends_its_alert_over_tls_1_3() {
    let pki = Pki::new();
    let server = super::tls_server::serve_tls("greeting", &pki.server, &["--tls-alpn", "h2"]);
    let mut cmd = socketkit();
    cmd.args(["connect", &server.addr(), "--tls-ca", pki.ca()])
        .args(["--tls-alpn", "gopher"]);
    let out = run(cmd, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert_one_error(
        &out.stderr,
        &format!(
            "cannot connect to {}: no application protocol (ALPN) in common with the peer \
             (no application protocol alert)",
            server.addr()
        ),
    );
}
