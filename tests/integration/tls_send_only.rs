//! `connect tls: --send-only` against TLS servers that are not socketkit (Python's `ssl`
//! module): every byte delivered to a server that echoes, and the run ended by the end of
//! stdin against one that greets and never closes.

use std::io::Write;
use std::time::Duration;

use crate::support::certs::Pki;
use crate::support::process::{DEADLINE, Running, lines_of, run, socketkit};
use crate::support::tls_peers::python_server;

/// How long an answer may take through the bridge on a loaded machine.
const ANSWER: Duration = Duration::from_secs(5);

#[test]
fn send_only_delivers_everything_to_an_echoing_server_and_exits_0() {
    // The echoes pile up unread; closing with them unread resets the connection, which
    // must not happen before the server has every byte.
    let pki = Pki::new();
    let input = crate::support::net::payload(1024 * 1024);
    for round in 0..20 {
        let Some(mut server) = python_server(&pki.server, "echo_count", "") else {
            return;
        };
        let mut cmd = socketkit();
        cmd.arg("connect")
            .arg(format!("tls:localhost:{}", server.port()))
            .args(["--tls-ca", pki.ca(), "--send-only"]);
        let out = run(cmd, input.clone(), DEADLINE);
        assert_eq!(out.code(), 0, "round {round}: {}", out.stderr);
        server.wait(DEADLINE);
        let got = server.stdout_text();
        assert_eq!(
            got.trim(),
            input.len().to_string(),
            "round {round}: bytes the server got; its stderr:\n{}",
            server.stderr()
        );
    }
}

/// A greeting that was in the client's kernel before its input is no answer to the input,
/// even when the client gets to both at once (here: stopped while they arrive, as a loaded
/// machine leaves it), so the end of stdin ends the run against a server that holds the
/// connection (after 1 s of quiet) rather than waiting for it to close.
#[test]
fn send_only_ends_with_stdin_though_it_reads_a_greeting_and_its_input_at_once() {
    let pki = Pki::new();
    for round in 0..4 {
        let Some(mut server) = python_server(&pki.server, "greet_hold", "not for stdout\n") else {
            return;
        };
        let from_server = lines_of(server.take_stdout());
        let mut cmd = socketkit();
        cmd.arg("connect")
            .arg(format!("tls:localhost:{}", server.port()))
            .args(["--tls-ca", pki.ca(), "--send-only"]);
        let mut client = Running::start(cmd, 0);
        let said = |wanted: &[u8]| match from_server.recv_timeout(ANSWER) {
            Ok(line) => assert_eq!(line, wanted, "round {round}"),
            Err(_) => panic!("round {round}: the server never said {wanted:?}"),
        };
        said(b"up\n");
        client.signal(libc::SIGSTOP);
        let mut server_in = server.take_stdin();
        server_in.write_all(b"greet\n").expect("server stdin");
        said(b"greeted\n");
        let mut stdin = client.take_stdin();
        stdin.write_all(b"sent\n").expect("stdin");
        drop(stdin);
        client.signal(libc::SIGCONT);
        said(b"sent\n");
        let status = client.wait(Duration::from_secs(10));
        assert!(status.success(), "round {round}: {}", client.stderr());
        assert_eq!(client.stdout_text(), "", "round {round}");
        drop(server_in);
        assert!(server.wait(DEADLINE).success(), "{}", server.stderr());
    }
}
