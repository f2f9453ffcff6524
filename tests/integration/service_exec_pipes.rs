//! The exec service on pipes — a TLS session, a Unix connection under an idle timeout —
//! behaves as on a socket: a program that answers and closes its stdout before it reads the
//! client's upload still gets every byte of it (the connection is half-closed, not ended),
//! and one that works on after closing its stdout is waited for, not killed. The program
//! got only what its stdin's pipe held, and was killed a second later, while the client
//! exited 0. Found by an outside audit of socketkit's TLS beside openssl, curl and socat.

use std::path::Path;
use std::time::Duration;

use crate::support::net::payload;
use crate::support::process::{DEADLINE, Running, run, socketkit};
use crate::support::{TestResult, wait_until};

const UPLOAD: usize = 300_000;

/// Sends the upload to `endpoint` with `socketkit connect EXTRA...`, checks the answer and
/// the exit, and waits for the program's count of what it read in `counted`.
fn upload(endpoint: &str, extra: &[&str], counted: &Path) -> TestResult {
    let mut client = socketkit();
    client.arg("connect").arg(endpoint).args(extra);
    let out = run(client, payload(UPLOAD), DEADLINE);
    assert_eq!(out.code(), 0, "{endpoint}: {}", out.stderr);
    assert_eq!(out.stdout, b"ready\n", "{endpoint}: {}", out.stderr);
    wait_until(
        Duration::from_secs(10),
        || format!("{endpoint}: the program never counted its input (killed?)"),
        || counted.exists(),
    );
    let count = std::fs::read_to_string(counted)?;
    assert_eq!(count.trim(), UPLOAD.to_string(), "{endpoint}");
    std::fs::remove_file(counted)?;
    Ok(())
}

#[test]
fn a_program_that_closes_its_stdout_first_still_reads_the_whole_upload() -> TestResult {
    let dir = tempfile::tempdir()?;
    let counted = dir.path().join("counted");
    let socket = dir.path().join("exec.sock");
    let unix = format!("unix:{}", socket.display());
    // Answers, closes its stdout, works on for longer than the second a program was given
    // once its output ended, then counts its input.
    let script = r#"echo ready; exec >&-; sleep 1.2; wc -c > "$0.tmp" && mv "$0.tmp" "$0""#;
    let mut cmd = socketkit();
    cmd.args(["serve", "exec", "-l", "tls:127.0.0.1:0", "-l", &unix])
        .args(["--tls-self-signed", "--idle-timeout", "30s", "--"])
        .args(["sh", "-c", script])
        .arg(&counted);
    let server = Running::start(cmd, 2);
    upload(&server.endpoints()[0], &["--tls-insecure"], &counted)?;
    upload(&unix, &[], &counted)?;
    Ok(())
}

/// `--idle-timeout` on pipes: a program that stops reading leaves both copies waiting on its
/// pipes, and the connection's own idle timer, looked at only when it is read or written,
/// never fired — the connection and the program were held until the program exited or the
/// server stopped (a review of the relay's same fix). They end at the limit now.
#[test]
fn a_program_that_stops_reading_is_ended_at_the_idle_timeout() -> TestResult {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("exec.sock");
    let endpoint = format!("unix:{}", socket.display());
    let mut cmd = socketkit();
    cmd.args([
        "serve",
        "exec",
        "-v",
        "-l",
        &endpoint,
        "--idle-timeout",
        "500ms",
    ])
    .args(["--", "sleep", "60"]);
    let server = Running::start(cmd, 1);
    let mut client = std::os::unix::net::UnixStream::connect(&socket)?;
    // Until every buffer on the way is full: a write that waits 300 ms means they are.
    client.set_write_timeout(Some(Duration::from_millis(300)))?;
    let block = [b'k'; 16 * 1024];
    let mut pushed = 0usize;
    while pushed < 64 << 20 {
        match client.write(&block) {
            Ok(n) => pushed += n,
            Err(_) => break,
        }
    }
    let stalled = std::time::Instant::now();
    client.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = [0u8; 16];
    let end = client.read(&mut buf);
    let took = stalled.elapsed();
    assert!(
        !matches!(&end, Err(err) if matches!(err.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "held 10 s into a 500 ms idle limit ({pushed} bytes pushed); server: {}",
        server.stderr()
    );
    assert!(took < Duration::from_secs(5), "{took:?}: {end:?}");
    // The closing line says it was cut (the second review: it often read as a clean end).
    server.wait_for_stderr(&[" closed "], Duration::from_secs(5));
    let said = server.stderr();
    let closed = said
        .lines()
        .find(|line| line.contains(" closed "))
        .unwrap_or_default();
    assert!(closed.contains("error=\"idle for 500ms\""), "{said}");
    Ok(())
}
