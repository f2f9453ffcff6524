//! An output nobody reads for now holds back the receiving, never the sending: a `listen`
//! whose stdout is full still sends its input and its end, over TLS as over TCP. The TLS
//! bridge once wrote the output on the thread that also sends, so a receiver that filled
//! its stdout before its banner went out never sent it, and its peer waited for ever. Its
//! output now has a thread of its own, whose failed write (a full disk) still ends the run
//! at once, however quiet the peer (an outside audit found it waited for the peer's next
//! bytes).

use std::io::Write;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::TestResult;
use crate::support::certs::Pki;
use crate::support::net::IO_TIMEOUT;
use crate::support::process::{DEADLINE, Running, lines_of, socketkit, stderr_of, wait_bounded};

/// Waits until `fed` has passed `least` and then stayed still for `still`: every buffer
/// between the feeder and the stalled output is full (bounded by `DEADLINE`).
fn wait_for_a_stall(fed: &AtomicUsize, least: usize, still: Duration) {
    let deadline = Instant::now() + DEADLINE;
    let mut last = (fed.load(Ordering::Relaxed), Instant::now());
    loop {
        assert!(Instant::now() < deadline, "the transfer never stalled");
        thread::sleep(Duration::from_millis(20));
        let now = fed.load(Ordering::Relaxed);
        if now != last.0 {
            last = (now, Instant::now());
        } else if now >= least && last.1.elapsed() >= still {
            return;
        }
    }
}

#[test]
fn a_listener_whose_output_is_not_read_still_sends_its_input() -> TestResult {
    let pki = Pki::new();
    for tls in [false, true] {
        let mut listen = socketkit();
        listen.arg("listen");
        if tls {
            listen.args(["tls:127.0.0.1:0", "--tls-cert", pki.server.cert()]);
            listen.args(["--tls-key", pki.server.key()]);
        } else {
            listen.arg("127.0.0.1:0");
        }
        // Its stdout is piped and never read: it fills.
        let mut listener = Running::start(listen, 1);
        let mut answer = listener.take_stdin();
        let mut connect = socketkit();
        connect.args(["connect", &listener.endpoints()[0]]);
        if tls {
            connect.arg("--tls-insecure");
        }
        connect
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = connect.spawn()?;
        let mut stdin = child.stdin.take().ok_or("stdin")?;
        let lines = lines_of(child.stdout.take().ok_or("stdout")?);
        let fed = Arc::new(AtomicUsize::new(0));
        let feeder = {
            let fed = Arc::clone(&fed);
            thread::spawn(move || {
                let chunk = vec![b'x'; 64 * 1024];
                for _ in 0..256 {
                    if stdin.write_all(&chunk).is_err() {
                        break;
                    }
                    fed.fetch_add(chunk.len(), Ordering::Relaxed);
                }
            })
        };
        // The listener's stdout, its sockets and the connect's are full: only now does
        // the listener get something to send.
        wait_for_a_stall(&fed, 1024 * 1024, Duration::from_millis(500));
        answer.write_all(b"hello\n")?;
        drop(answer);
        let got = lines.recv_timeout(IO_TIMEOUT);
        let _ = child.kill();
        wait_bounded(&mut child, DEADLINE);
        drop(listener);
        feeder.join().expect("the feeder ends");
        assert_eq!(got.as_deref(), Ok(&b"hello\n"[..]), "tls {tls}");
    }
    Ok(())
}

#[test]
fn a_failed_write_to_stdout_ends_the_run_though_the_peer_is_quiet() -> TestResult {
    let pki = Pki::new();
    let mut serve = socketkit();
    serve.args([
        "serve",
        "echo",
        "-l",
        "127.0.0.1:0",
        "-l",
        "tls:127.0.0.1:0",
    ]);
    serve.args([
        "--tls-cert",
        pki.server.cert(),
        "--tls-key",
        pki.server.key(),
    ]);
    let server = Running::start(serve, 2);
    for endpoint in server.endpoints() {
        let mut connect = socketkit();
        connect.args(["connect", endpoint]);
        if endpoint.starts_with("tls:") {
            connect.arg("--tls-insecure");
        }
        // Every write to /dev/full fails with ENOSPC, as to a full disk.
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full")?;
        connect
            .stdin(Stdio::piped())
            .stdout(full)
            .stderr(Stdio::piped());
        let mut child = connect.spawn()?;
        // The echo's answer is the only write; the input stays open and the peer quiet.
        let mut stdin = child.stdin.take().ok_or("stdin")?;
        stdin.write_all(b"hello\n")?;
        let status = wait_bounded(&mut child, Duration::from_secs(5));
        drop(stdin);
        let err = stderr_of(&mut child)?;
        assert_eq!(status.code(), Some(1), "{endpoint}: {err}");
        assert!(err.contains("no space left on device"), "{endpoint}: {err}");
    }
    Ok(())
}
