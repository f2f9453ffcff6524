//! `connect --idle-timeout` shorter than the input's pause (1 s), against a peer that reads
//! a line, answers and closes, the input left open and quiet: the run ends as it does
//! without a limit (the answer out, exit 0), over TCP and TLS. The limit is for a peer that
//! reads on, or one that says nothing; before, it ran out during the pause and the run
//! ended `error: cannot send to …: no data either way for 500ms`, exit 1 (over TLS without
//! a close_notify, which the peer took for a truncation).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::thread;

use crate::support::TestResult;
use crate::support::certs::Pki;
use crate::support::process::{DEADLINE, socketkit, stderr_of, stdout_of, wait_bounded};
use crate::support::tls_peers;

/// `connect ENDPOINT --idle-timeout 500ms -q` with `extra`, its stdio piped.
fn connect(endpoint: &str, extra: &[&str]) -> Command {
    let mut cmd = socketkit();
    cmd.args(["connect", endpoint, "-q", "--idle-timeout", "500ms"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// A run's exit code, output and stderr.
type Answered = (Option<i32>, String, String);

/// Writes a line to `child`'s input and keeps the input open until it exits: its status,
/// output and stderr.
fn ask_and_keep_the_input_open(child: &mut Child) -> Result<Answered, Box<dyn std::error::Error>> {
    let mut stdin = child.stdin.take().ok_or("stdin")?;
    stdin.write_all(b"question\n")?;
    let status = wait_bounded(child, DEADLINE);
    drop(stdin);
    Ok((status.code(), stdout_of(child)?, stderr_of(child)?))
}

#[test]
fn over_tcp_a_peer_that_answered_and_closed_ends_the_run_with_zero_within_the_idle_limit()
-> TestResult {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?.to_string();
    let peer = thread::spawn(move || -> std::io::Result<Vec<u8>> {
        let (mut stream, _) = listener.accept()?;
        stream.set_read_timeout(Some(DEADLINE))?;
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while !got.contains(&b'\n') {
            match stream.read(&mut buf)? {
                0 => break,
                n => got.extend_from_slice(&buf[..n]),
            }
        }
        stream.write_all(b"answer\n")?;
        Ok(got)
    });
    let mut child = connect(&addr, &[]).spawn()?;
    let (code, out, err) = ask_and_keep_the_input_open(&mut child)?;
    let asked = peer.join().map_err(|_| "peer")??;
    assert_eq!(asked, b"question\n", "{err}");
    assert_eq!((code, out.as_str()), (Some(0), "answer\n"), "{err}");
    Ok(())
}

#[test]
fn over_tls_a_peer_that_answered_and_closed_ends_the_run_with_zero_and_close_notify() -> TestResult
{
    let pki = Pki::new();
    let Some(mut peer) = tls_peers::python_server(&pki.server, "reply", "answer\n") else {
        return Ok(());
    };
    let target = peer.endpoints()[0].clone();
    let mut child = connect(&target, &["--tls-insecure"]).spawn()?;
    let (code, out, err) = ask_and_keep_the_input_open(&mut child)?;
    assert_eq!((code, out.as_str()), (Some(0), "answer\n"), "{err}");
    // The peer's unwrap fails on a close without close_notify.
    assert_eq!(peer.wait(DEADLINE).code(), Some(0), "{}", peer.stderr());
    Ok(())
}
