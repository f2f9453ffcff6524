//! Access control, per-source limits and privilege drop (SPEC §3.2) through the real binary.
//! Linux routes all of 127.0.0.0/8 to loopback, so a client that binds 127.0.0.2 or
//! 127.0.0.3 before connecting is a different source to the server.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use crate::support::net::{IO_TIMEOUT, connect_from, read_once, try_connect_from};
use crate::support::process::{DEADLINE, Running, run, socketkit};
use crate::support::{TestResult, wait_until};

fn serve(args: &[&str]) -> Running {
    let mut cmd = socketkit();
    cmd.arg("serve").args(args);
    Running::start(cmd, 1)
}

/// The server's address as a socket address (the `tcp:`/`udp:` scheme stripped).
fn target(server: &Running) -> SocketAddr {
    let endpoint = &server.endpoints()[0];
    let addr = endpoint
        .split_once(':')
        .map_or(endpoint.as_str(), |(_, rest)| rest);
    let addr = addr
        .replace("[::]", "[::1]")
        .replace("0.0.0.0", "127.0.0.1");
    addr.parse().expect("a socket address")
}

/// What a source gets from a greeting server: `Some(bytes)` or `None` when refused (reset
/// before any byte).
fn greeting_from(from: &str, to: SocketAddr) -> Option<Vec<u8>> {
    let mut stream = match try_connect_from(from, to) {
        Ok(stream) => stream,
        Err(err) if err.kind() == ErrorKind::ConnectionReset => return None,
        Err(err) => panic!("connect {from} -> {to}: {err}"),
    };
    let mut got = Vec::new();
    match stream.read_to_end(&mut got) {
        Ok(_) if got.is_empty() => panic!("{from}: closed without a byte but not reset"),
        Ok(_) => Some(got),
        Err(err) if err.kind() == ErrorKind::ConnectionReset => {
            assert!(
                got.is_empty(),
                "{from}: a refused source got bytes: {got:?}"
            );
            None
        }
        Err(err) => panic!("{from}: {err}"),
    }
}

fn admitted(from: &str, to: SocketAddr) -> bool {
    match greeting_from(from, to) {
        Some(bytes) => {
            assert_eq!(bytes, "你好".as_bytes(), "{from}");
            true
        }
        None => false,
    }
}

#[test]
fn allow_and_deny_rules_with_host_and_zero_length_networks() {
    let cases: [(&[&str], [bool; 3]); 5] = [
        // (options, admitted? for 127.0.0.1, 127.0.0.2, 127.0.0.3)
        (&["--allow", "127.0.0.2"], [false, true, false]),
        (&["--deny", "127.0.0.3/32"], [true, true, false]),
        (
            &["--allow", "127.0.0.0/8", "--deny", "127.0.0.3"],
            [true, true, false],
        ),
        (
            &["--allow", "0.0.0.0/0", "--deny", "127.0.0.2/31"],
            [true, false, false],
        ),
        (
            &["--deny", "0.0.0.0/0", "--allow", "127.0.0.1"],
            [false, false, false],
        ),
    ];
    for (options, expected) in cases {
        let mut args = vec!["-l", "127.0.0.1:0"];
        args.extend_from_slice(options);
        let server = serve(&args);
        let to = target(&server);
        for (source, want) in ["127.0.0.1", "127.0.0.2", "127.0.0.3"].iter().zip(expected) {
            assert_eq!(admitted(source, to), want, "{options:?}, source {source}");
        }
    }
}

#[test]
fn a_dual_stack_listener_matches_mapped_peers_against_ipv4_rules() {
    let server = serve(&["-l", ":0", "--deny", "127.0.0.3", "--deny", "::1/128"]);
    let to = target(&server);
    assert!(admitted("127.0.0.2", to));
    assert!(
        !admitted("127.0.0.3", to),
        "::ffff:127.0.0.3 matches 127.0.0.3"
    );
    assert!(!admitted("::1", to));
    let only_v6 = serve(&["-l", ":0", "--allow", "::1"]);
    let to = target(&only_v6);
    assert!(admitted("::1", to));
    assert!(
        !admitted("127.0.0.1", to),
        "allow rules for IPv6 only shut IPv4 out"
    );
}

#[test]
fn rule_files_take_comments_and_blank_lines() -> TestResult {
    let dir = tempfile::tempdir()?;
    let allow = dir.path().join("allow.txt");
    std::fs::write(
        &allow,
        "# the test's sources\n\n127.0.0.2   # one\n127.0.0.4/31\n",
    )?;
    let deny = dir.path().join("deny.txt");
    std::fs::write(&deny, "127.0.0.5\n")?;
    let server = serve(&[
        "-l",
        "127.0.0.1:0",
        "--allow-file",
        allow.to_str().ok_or("utf-8 path")?,
        "--deny-file",
        deny.to_str().ok_or("utf-8 path")?,
    ]);
    let to = target(&server);
    assert!(admitted("127.0.0.2", to));
    assert!(!admitted("127.0.0.3", to));
    assert!(admitted("127.0.0.4", to));
    assert!(!admitted("127.0.0.5", to), "deny wins over the allowed /31");
    Ok(())
}

/// An allow file that names no network (emptied, or caught mid-rewrite by a SIGHUP) is an
/// allow list of no one: every source is refused, and the log says why, at start and on
/// the reload that finds it so — as ncat's `--allowfile` refuses all.
#[test]
fn an_allow_file_that_names_no_network_refuses_everyone_and_says_so() -> TestResult {
    const NOBODY: &str = "the rules allow nothing: the allow files name no network";
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("allow.txt");
    std::fs::write(&file, "# nobody for now\n")?;
    let path = file.to_str().ok_or("utf-8 path")?;
    let server = serve(&["-l", "127.0.0.1:0", "--allow-file", path]);
    let to = target(&server);
    server.wait_for_stderr(&[NOBODY], Duration::from_secs(5));
    assert!(
        !admitted("127.0.0.1", to),
        "an empty allow file let a source in"
    );
    std::fs::write(&file, "127.0.0.2\n")?;
    server.signal(libc::SIGHUP);
    wait_until(
        Duration::from_secs(5),
        || "the allowed source never got in".to_owned(),
        || admitted_quietly("127.0.0.2", to),
    );
    std::fs::write(&file, "")?;
    server.signal(libc::SIGHUP);
    wait_until(
        Duration::from_secs(5),
        || "the emptied file still let 127.0.0.2 in".to_owned(),
        || !admitted_quietly("127.0.0.2", to),
    );
    // Said again by the reload (the log's own thread writes it, maybe a moment later).
    wait_until(
        Duration::from_secs(5),
        || server.stderr(),
        || server.stderr().matches(NOBODY).count() == 2,
    );
    Ok(())
}

#[test]
fn a_bad_rule_is_a_usage_error_naming_it_before_listening() -> TestResult {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("rules.txt");
    std::fs::write(&file, "127.0.0.1\n# fine\n10.0.0.0/33\n")?;
    let path = file.to_str().ok_or("utf-8 path")?;
    let mut cmd = socketkit();
    cmd.args(["serve", "-l", "127.0.0.1:0", "--deny-file", path]);
    let out = run(cmd, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 2, "{}", out.stderr);
    assert!(!out.stderr.contains("listening on"), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("{path}:3")) && out.stderr.contains("10.0.0.0/33"),
        "{}",
        out.stderr
    );
    for bad in ["10.0.0.0/33", "example.com", "::/129", ""] {
        let mut cmd = socketkit();
        cmd.args(["serve", "-l", "127.0.0.1:0", "--allow", bad]);
        let out = run(cmd, Vec::new(), DEADLINE);
        assert_eq!(out.code(), 2, "--allow {bad:?}: {}", out.stderr);
        assert_eq!(out.stderr.matches("error:").count(), 1, "{}", out.stderr);
        assert!(out.stderr.contains("--allow"), "{}", out.stderr);
    }
    Ok(())
}

#[test]
fn sighup_reloads_the_files_under_load_without_failing_an_allowed_client() -> TestResult {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("deny.txt");
    std::fs::write(&file, "127.0.0.3\n")?;
    let path = file.to_str().ok_or("utf-8 path")?;
    let server = serve(&["-l", "127.0.0.1:0", "--deny-file", path, "-v"]);
    let to = target(&server);
    assert!(!admitted("127.0.0.3", to));
    let load = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut served = 0;
        while Instant::now() < deadline && served < 2_000 {
            assert!(admitted("127.0.0.2", to), "an allowed client was refused");
            served += 1;
        }
        served
    });
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&file, "127.0.0.4\n")?;
    server.signal(libc::SIGHUP);
    wait_until(
        Duration::from_secs(5),
        || "the new rules never took effect".to_owned(),
        || admitted_quietly("127.0.0.3", to),
    );
    assert!(!admitted("127.0.0.4", to));
    // A file that no longer parses: the rules in force stay, and the log says why.
    std::fs::write(&file, "127.0.0.4\nnot-a-network\n")?;
    server.signal(libc::SIGHUP);
    // The line names the file and its line (`…/deny.txt:2: invalid network`); a bare ":2"
    // was in the log already whenever a port began with 2.
    server.wait_for_stderr(&[&format!("{path}:2: ")], Duration::from_secs(5));
    server.assert_said("not-a-network");
    assert!(!admitted("127.0.0.4", to), "the old rules stay");
    assert!(admitted("127.0.0.3", to));
    let served = load.join().map_err(|_| "load thread panicked")?;
    assert!(served > 10, "the load ran ({served} connections)");
    Ok(())
}

/// As [`admitted`], without asserting on the greeting (for polling).
fn admitted_quietly(from: &str, to: SocketAddr) -> bool {
    greeting_from(from, to).is_some()
}

/// Whether a new echo connection from `from` is open and served (a byte goes and comes
/// back): the connection, or `None` when it was refused.
fn echo_from(from: &str, to: SocketAddr) -> Option<TcpStream> {
    let mut stream = match try_connect_from(from, to) {
        Ok(stream) => stream,
        Err(err) if err.kind() == ErrorKind::ConnectionReset => return None,
        Err(err) => panic!("connect {from} -> {to}: {err}"),
    };
    echo_open(&mut stream).then_some(stream)
}

/// Whether a connection from `from` that writes a line is reset (refused) rather than
/// served. The reset is waited for up to [`IO_TIMEOUT`]: under the whole suite's load on two
/// cores, a second was once not enough for a just-started `listen` to accept and refuse.
fn reset_after_writing(from: &str, to: SocketAddr) -> bool {
    let mut stream = match try_connect_from(from, to) {
        Ok(stream) => stream,
        Err(err) if err.kind() == ErrorKind::ConnectionReset => return true,
        Err(err) => panic!("connect {from} -> {to}: {err}"),
    };
    let _ = stream.write_all(b"from a denied source\n");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let mut byte = [0u8; 1];
    matches!(read_once(&mut stream, &mut byte), Err(err) if err.kind() == ErrorKind::ConnectionReset)
}

/// Whether an echo connection is open and served: a byte goes and comes back.
fn echo_open(stream: &mut TcpStream) -> bool {
    if stream.write_all(b"x").is_err() {
        return false;
    }
    let mut byte = [0u8; 1];
    matches!(read_once(stream, &mut byte), Ok(1))
}

#[test]
fn max_per_source_caps_one_source_and_not_another() {
    let server = serve(&["echo", "-l", "127.0.0.1:0", "--max-per-source", "2"]);
    let to = target(&server);
    let mut held: Vec<TcpStream> = (0..2)
        .map(|_| echo_from("127.0.0.2", to).expect("within the cap"))
        .collect();
    assert!(
        echo_from("127.0.0.2", to).is_none(),
        "a third connection from one source is refused at once"
    );
    let others: Vec<TcpStream> = (0..2)
        .map(|_| echo_from("127.0.0.3", to).expect("another source is not affected"))
        .collect();
    drop(held.pop());
    wait_until(
        Duration::from_secs(5),
        || "the closed connection's place never came back".to_owned(),
        || echo_from("127.0.0.2", to).is_some(),
    );
    drop(others);
}

#[test]
fn rate_per_source_refuses_the_excess_of_one_source_only() {
    let server = serve(&["-l", "127.0.0.1:0", "--rate-per-source", "3/1m", "-v"]);
    let to = target(&server);
    for _ in 0..3 {
        assert!(admitted("127.0.0.2", to));
    }
    assert!(
        !admitted("127.0.0.2", to),
        "the fourth within a minute is refused"
    );
    for _ in 0..3 {
        assert!(
            admitted("127.0.0.3", to),
            "another source has its own budget"
        );
    }
    // The refusal's line is written as the client is reset: give the log a moment.
    server.wait_for_stderr(&["127.0.0.2", "rate"], Duration::from_secs(5));
}

#[test]
fn udp_datagrams_from_refused_sources_are_dropped() -> TestResult {
    let mut cmd = socketkit();
    cmd.args([
        "serve",
        "echo",
        "-l",
        "udp:127.0.0.1:0",
        "--deny",
        "127.0.0.3",
    ]);
    let server = Running::start(cmd, 1);
    let to = target(&server);
    let ask = |from: &str| -> std::io::Result<Vec<u8>> {
        let socket = UdpSocket::bind((from, 0))?;
        socket.set_read_timeout(Some(Duration::from_millis(500)))?;
        socket.send_to(b"ping", to)?;
        let mut buf = [0u8; 64];
        let n = socket.recv(&mut buf)?;
        Ok(buf[..n].to_vec())
    };
    assert_eq!(ask("127.0.0.2")?, b"ping");
    assert!(ask("127.0.0.3").is_err(), "no answer to a denied source");
    Ok(())
}

#[test]
fn forward_and_listen_keep_open_take_the_same_rules() -> TestResult {
    let echo = serve(&["echo", "-l", "127.0.0.1:0"]);
    let mut cmd = socketkit();
    cmd.args([
        "forward",
        "-l",
        "127.0.0.1:0",
        "--to",
        &echo.endpoints()[0],
        "--deny",
        "127.0.0.3",
    ]);
    let relay = Running::start(cmd, 1);
    let to = target(&relay);
    assert!(echo_from("127.0.0.2", to).is_some());
    assert!(echo_from("127.0.0.3", to).is_none());

    // listen (with or without -k) resets a refused peer and waits for the next.
    for keep_open in [false, true] {
        let mut cmd = socketkit();
        cmd.args(["listen", "127.0.0.1:0", "--allow", "127.0.0.2"]);
        if keep_open {
            cmd.arg("-k");
        }
        let mut listener = Running::start(cmd, 1);
        let to = target(&listener);
        assert!(reset_after_writing("127.0.0.3", to), "refused");
        let mut allowed = connect_from("127.0.0.2", to);
        allowed.write_all(b"from an allowed source\n")?;
        drop(allowed);
        if keep_open {
            std::thread::sleep(Duration::from_millis(300));
            listener.signal(libc::SIGTERM);
        }
        let status = listener.wait(DEADLINE);
        assert!(keep_open || status.success(), "{}", listener.stderr());
        assert_eq!(listener.stdout_text(), "from an allowed source\n");
    }
    Ok(())
}

#[test]
fn user_and_group_drop_root_before_serving() {
    if !as_root() {
        return;
    }
    let server = serve(&[
        "-l",
        "127.0.0.1:0",
        "--user",
        "nobody",
        "--group",
        "nogroup",
    ]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid()))
        .expect("the server's status");
    let ids = |field: &str| -> Vec<String> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .map(|rest| rest.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default()
    };
    assert_eq!(ids("Uid:"), ["65534"; 4], "{status}");
    assert_eq!(ids("Gid:"), ["65534"; 4], "{status}");
    assert_eq!(ids("Groups:"), ["65534"], "{status}");
    assert!(admitted("127.0.0.1", target(&server)), "it still serves");

    let mut cmd = socketkit();
    cmd.args(["serve", "-l", "127.0.0.1:0", "--user", "no-such-user-here"]);
    let out = run(cmd, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 2, "{}", out.stderr);
    assert!(out.stderr.contains("no-such-user-here"), "{}", out.stderr);
}

/// Whether this test runs as root, which dropping privileges needs (CI does: there it must).
pub(crate) fn as_root() -> bool {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true"),
        "CI runs as root: the privilege drop must be tested there"
    );
    eprintln!("skipped: dropping privileges needs root");
    false
}

/// `serve -l unix:DIR/s.sock --user nobody --pid-file DIR/s.pid`, stopped by SIGTERM once
/// `check` has looked at it; returns its stderr and the two paths.
fn serve_as_nobody_in(
    dir: &std::path::Path,
    check: impl FnOnce(&Running),
) -> (String, [std::path::PathBuf; 2]) {
    let socket = dir.join("s.sock");
    let pid_file = dir.join("s.pid");
    let mut server = serve(&[
        "-l",
        &format!("unix:{}", socket.display()),
        "--user",
        "nobody",
        "--pid-file",
        &pid_file.display().to_string(),
    ]);
    check(&server);
    server.signal(libc::SIGTERM);
    let status = server.wait(IO_TIMEOUT);
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    (server.stderr(), [socket, pid_file])
}

/// The warning of files left behind comes after every line a script reads at start: the
/// readiness lines, and a self-signed certificate's fingerprint.
#[test]
fn the_files_warning_comes_after_the_tls_fingerprint_too() -> TestResult {
    use std::os::unix::fs::PermissionsExt;
    if !as_root() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let socket = dir.path().join("t.sock");
    let mut cmd = socketkit();
    cmd.args([
        "serve",
        "echo",
        "-l",
        "tls:127.0.0.1:0",
        "--tls-self-signed",
    ])
    .args([
        "-l",
        &format!("unix:{}", socket.display()),
        "--user",
        "nobody",
    ]);
    let server = Running::start(cmd, 2);
    server.wait_for_stderr(&["will stay after exit"], IO_TIMEOUT);
    let log = server.stderr();
    let fingerprint = log
        .find("SHA-256 fingerprint")
        .ok_or("no fingerprint line")?;
    let warning = log.find("will stay after exit").ok_or("no warning")?;
    assert!(fingerprint < warning, "{log}");
    Ok(())
}

#[test]
fn a_dropped_user_has_its_pid_file_and_is_told_of_files_it_cannot_remove() -> TestResult {
    use std::os::unix::fs::PermissionsExt;
    if !as_root() {
        return Ok(());
    }
    // A directory only root may write, as /run: the pid file is written before the drop,
    // and the files nobody may not remove are named at start.
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let (log, files) = serve_as_nobody_in(dir.path(), |server| {
        let pid = std::fs::read_to_string(dir.path().join("s.pid")).unwrap_or_default();
        assert_eq!(pid.trim(), server.pid().to_string());
    });
    for file in &files {
        let said = format!("{} will stay after exit", file.display());
        assert!(log.contains(&said), "{log}");
    }
    // Said after the readiness lines, which nothing may come before on stderr.
    assert!(log.starts_with("listening on "), "{log}");

    // A directory of its own: no warning, and both files go at exit.
    let own = tempfile::tempdir()?;
    std::os::unix::fs::chown(own.path(), Some(65534), Some(65534))?;
    let (log, files) = serve_as_nobody_in(own.path(), |_| {});
    assert!(!log.contains("will stay"), "{log}");
    assert!(files.iter().all(|file| !file.exists()), "{log}");
    Ok(())
}
