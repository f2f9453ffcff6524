//! `socketkit connect` as OpenSSH's `ProxyCommand`, the way most people meet a netcat:
//! `ssh -o ProxyCommand='socketkit connect %h %p'`. ssh writes to the connect's stdin and
//! reads its stdout through pipes, and the protocol waits for answers both ways, so a byte
//! held back on either side stalls the session. A local sshd on a free port, with keys made
//! for the test.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::net::{free_port, hash, payload};
use crate::support::process::{DEADLINE, Running, command, lines_of, run_streamed, wait_bounded};
use crate::support::tools;

/// A running sshd that accepts the test's key for the current user, and what ssh needs.
struct Sshd {
    _dir: tempfile::TempDir,
    _server: Running,
    port: u16,
    key: PathBuf,
    user: String,
}

/// Starts sshd, or says why it cannot be (skipped, or failed under `CI=true`).
fn sshd() -> Option<Sshd> {
    for tool in ["sshd", "ssh", "ssh-keygen"] {
        if !tools::available(tool) {
            return None;
        }
    }
    // sshd refuses to start without its privilege separation directory.
    if std::fs::create_dir_all("/run/sshd").is_err() && !Path::new("/run/sshd").is_dir() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "/run/sshd cannot be made under CI=true"
        );
        eprintln!("skipped: /run/sshd is missing and cannot be made (sshd needs it)");
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("id");
    let host_key = dir.path().join("host");
    for path in [&key, &host_key] {
        let made = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(path)
            .status()
            .expect("ssh-keygen runs");
        assert!(made.success(), "ssh-keygen failed");
    }
    let authorized = dir.path().join("authorized_keys");
    std::fs::copy(key.with_extension("pub"), &authorized).expect("authorized_keys");
    let port = free_port();
    let config = dir.path().join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nStrictModes no\n\
             UsePAM no\nPidFile {}\n",
            host_key.display(),
            authorized.display(),
            dir.path().join("sshd.pid").display(),
        ),
    )
    .expect("sshd_config");
    let sshd_path = which("sshd");
    let mut cmd = command(&sshd_path);
    cmd.arg("-D").arg("-e").arg("-f").arg(&config);
    let server = Running::start(cmd, 0);
    server.wait_for_stderr(&["Server listening on 127.0.0.1"], Duration::from_secs(10));
    let user = String::from_utf8(
        Command::new("id")
            .arg("-un")
            .output()
            .expect("id runs")
            .stdout,
    )
    .expect("a user name")
    .trim()
    .to_owned();
    Some(Sshd {
        _dir: dir,
        _server: server,
        port,
        key,
        user,
    })
}

/// Where `tool` is (sshd wants to be started by its absolute path).
fn which(tool: &str) -> PathBuf {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .expect("sh runs");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

impl Sshd {
    /// `ssh` to this sshd through `socketkit connect`, running `remote` there.
    fn ssh(&self, remote: &str) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(["-F", "/dev/null", "-i"])
            .arg(&self.key)
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
            ])
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "LogLevel=ERROR",
                "-o",
                "ConnectTimeout=10",
            ])
            .arg("-o")
            .arg(format!(
                "ProxyCommand={} connect %h %p",
                env!("CARGO_BIN_EXE_socketkit")
            ))
            .args(["-p", &self.port.to_string()])
            .arg(format!("{}@127.0.0.1", self.user))
            .arg(remote);
        cmd
    }
}

#[test]
fn ssh_through_connect_carries_a_stream_both_ways_intact() {
    let Some(sshd) = sshd() else { return };
    // Up: 4 MiB hashed on the far side, the hash printed back.
    let data = payload(4 << 20);
    let mut digest = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum runs");
    digest
        .stdin
        .take()
        .expect("piped")
        .write_all(&data)
        .expect("hashed here");
    let here = digest.wait_with_output().expect("sha256sum ends").stdout;
    let up = run_streamed(sshd.ssh("sha256sum"), data, DEADLINE);
    assert!(up.status.success(), "{}", up.stderr);
    assert_eq!(
        up.stdout_hash,
        hash(&here),
        "the far side hashed other bytes"
    );

    // Down: 8 MiB of zeros, counted here.
    let down = run_streamed(sshd.ssh("head -c 8388608 /dev/zero"), Vec::new(), DEADLINE);
    assert!(down.status.success(), "{}", down.stderr);
    assert_eq!(down.stdout_len, 8 << 20);
}

#[test]
fn ssh_through_connect_answers_each_line_while_the_session_stays_open() {
    let Some(sshd) = sshd() else { return };
    let mut cmd = sshd.ssh("while read line; do echo \"got $line\"; done");
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("ssh runs");
    let mut stdin = child.stdin.take().expect("piped");
    let lines = lines_of(child.stdout.take().expect("piped"));
    for turn in 0..3 {
        writeln!(stdin, "line {turn}").expect("written to ssh");
        stdin.flush().expect("flushed");
        // Each answer comes while stdin stays open: nothing waits for more input or an end.
        let answer = lines
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no answer to line {turn}"));
        assert_eq!(answer, format!("got line {turn}\n").into_bytes());
    }
    drop(stdin);
    let status = wait_bounded(&mut child, DEADLINE);
    assert!(status.success(), "ssh: {status:?}");
}
