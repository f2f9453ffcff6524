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
