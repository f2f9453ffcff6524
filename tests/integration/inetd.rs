//! `--inetd` (SPEC §3.4) with the connection on stdin and stdout made here, as inetd makes
//! it: the same admission as a listener's (SPEC §3.2) — access rules from the command line
//! and from files, per-source limits, PROXY headers — before any byte of the service; a
//! refused connection is reset and the process exits 0.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::process::{Child, Stdio};
use std::thread::JoinHandle;

use crate::support::TestResult;
use crate::support::net::IO_TIMEOUT;
use crate::support::process::{drain, socketkit, wait_bounded};

/// A socketkit started as inetd starts a server: the accepted end of a loopback connection
/// from 127.0.0.1 on its stdin and stdout. Killed and reaped on drop.
struct Inetd {
    child: Child,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl Inetd {
    /// `socketkit ARGS` on a fresh connection, and the client's end of it.
    fn start(args: &[&str]) -> (Inetd, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
        client.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        let (accepted, _) = listener.accept().expect("accept");
        let stdin = OwnedFd::from(accepted);
        let stdout = stdin.try_clone().expect("dup");
        let mut cmd = socketkit();
        cmd.args(args)
            .stdin(Stdio::from(stdin))
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("socketkit starts");
        // The command's copies of the connection would keep it open after socketkit exits.
        drop(cmd);
        let stderr = drain(child.stderr.take().expect("stderr is piped"));
        let inetd = Inetd {
            child,
            stderr: Some(stderr),
        };
        (inetd, client)
    }

    /// The exit code and everything written to stderr, once the process has exited.
    fn finish(mut self) -> (Option<i32>, String) {
        let status = wait_bounded(&mut self.child, IO_TIMEOUT);
        let stderr = self
            .stderr
            .take()
            .and_then(|reader| reader.join().ok())
            .unwrap_or_default();
        (status.code(), String::from_utf8_lossy(&stderr).into_owned())
    }
}

impl Drop for Inetd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `request`, half-closes and reads to the end: what the service sent back, or
/// `None` when the connection was reset.
fn exchange(client: &mut TcpStream, request: &[u8]) -> Option<Vec<u8>> {
    // A refused connection may be reset before the request goes out.
    if client.write_all(request).is_err() || client.shutdown(Shutdown::Write).is_err() {
        return None;
    }
    let mut got = Vec::new();
    match client.read_to_end(&mut got) {
        Ok(_) => Some(got),
        Err(err) if err.kind() == ErrorKind::ConnectionReset => None,
        Err(err) => panic!("read: {err}"),
    }
}

#[test]
fn access_rules_refuse_an_inetd_connection_before_any_byte() -> TestResult {
    let dir = tempfile::tempdir()?;
    let deny_file = dir.path().join("deny");
    std::fs::write(&deny_file, "# loopback\n127.0.0.0/8\n")?;
    let deny_file = deny_file.display().to_string();
    let rules: [&[&str]; 3] = [
        &["--deny", "127.0.0.1"],
        &["--allow", "127.0.0.2"],
        &["--deny-file", &deny_file],
    ];
    // The greeting answers at once; echo only what it is sent.
    for service in ["greeting", "echo"] {
        for rule in rules {
            let mut args = vec!["serve", service, "--inetd", "-v"];
            args.extend_from_slice(rule);
            let (server, mut client) = Inetd::start(&args);
            let got = exchange(&mut client, b"hello\n");
            assert!(
                got.as_ref().is_none_or(Vec::is_empty),
                "{service} {rule:?}: a refused client got {got:?}"
            );
            let (code, log) = server.finish();
            assert_eq!(code, Some(0), "{service} {rule:?}: {log}");
            assert!(
                log.contains("refused: ") && log.contains("reason=\"acl\""),
                "{log}"
            );
            assert!(!log.contains("closed peer="), "{log}");
        }
    }
    Ok(())
}

#[test]
fn an_allowed_inetd_connection_is_served() -> TestResult {
    let args = ["serve", "echo", "--inetd", "--allow", "127.0.0.1"];
    let (server, mut client) = Inetd::start(&args);
    assert_eq!(
        exchange(&mut client, b"hello\n").as_deref(),
        Some(&b"hello\n"[..])
    );
    let (code, log) = server.finish();
    assert_eq!(code, Some(0), "{log}");
    Ok(())
}

/// Each connection is a process of its own under `--inetd`: per-source limits had no count
/// to keep and passed every connection (`--rate-per-source 1/1m` let three in a row
/// through), a security control silently doing nothing; so did a connection limit and
/// workers. Refused as `--metrics` is (exit 2). Found by an outside audit. The service
/// manager listens, so the options that shape a listener (`--backlog`, `--shutdown-delay`,
/// both with defaults) are refused when written, on `serve` and on `forward`.
#[test]
fn options_that_count_across_connections_are_refused_under_inetd() {
    const COUNTING: &str = "each connection is a process of its own";
    const LISTENING: &str = "the service manager listens, not socketkit";
    for (option, value, why) in [
        ("--max-per-source", "1", COUNTING),
        ("--rate-per-source", "1/1m", COUNTING),
        ("--max-connections", "10", COUNTING),
        ("--workers", "2", COUNTING),
        ("--metrics", "127.0.0.1:0", COUNTING),
        ("--backlog", "5", LISTENING),
        ("--shutdown-delay", "1s", LISTENING),
    ] {
        for command in [
            &["serve", "echo", "--inetd"][..],
            &["forward", "--inetd", "--to", "127.0.0.1:9"],
        ] {
            let mut cmd = socketkit();
            cmd.args(command).args([option, value]);
            let out = crate::support::process::run(cmd, Vec::new(), IO_TIMEOUT);
            assert_eq!(out.code(), 2, "{command:?} {option}: {}", out.stderr);
            assert_eq!(
                out.stderr.trim_end(),
                format!("error: {option} does not apply to --inetd ({why})"),
            );
        }
    }
}

/// The connection inetd hands over gets Nagle's algorithm off, as a listener's does: an
/// echo of a message longer than one read came back 44 ms late. Found by an outside audit
/// of latency and buffering.
#[test]
fn an_inetd_echo_of_a_long_message_comes_back_at_once() {
    let (server, mut client) = Inetd::start(&["serve", "echo", "--inetd"]);
    let median = crate::support::net::echo_round_trip_median(&mut client, 20_000, 30);
    assert!(
        median < std::time::Duration::from_millis(20),
        "an echo of 20000 bytes took {median:?} (median of 30)"
    );
    drop(client);
    let (code, log) = server.finish();
    assert_eq!(code, Some(0), "{log}");
}

#[test]
fn the_rules_apply_to_the_client_a_proxy_header_names_under_inetd() -> TestResult {
    let header = b"PROXY TCP4 192.0.2.9 192.0.2.1 5000 80\r\n";
    for (rule, served) in [("192.0.2.0/24", false), ("198.51.100.0/24", true)] {
        let args = [
            "serve",
            "echo",
            "--inetd",
            "-v",
            "--proxy-protocol",
            "--trusted-proxy",
            "127.0.0.1",
            "--deny",
            rule,
        ];
        let (server, mut client) = Inetd::start(&args);
        let got = exchange(&mut client, &[&header[..], b"after the header"].concat());
        if served {
            assert_eq!(got.as_deref(), Some(&b"after the header"[..]));
        } else {
            assert!(got.as_ref().is_none_or(Vec::is_empty), "{got:?}");
        }
        let (code, log) = server.finish();
        assert_eq!(code, Some(0), "{log}");
        assert!(log.contains("peer=192.0.2.9:5000"), "{log}");
    }
    Ok(())
}
