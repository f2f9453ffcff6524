//! The exec service (SPEC §1.3) through the real binary: a program per connection with the
//! connection's socket itself as its stdin and stdout (inetd's way: `getpeername` works, and
//! an inetd-mode server runs under it), pipes only where the socket cannot be handed over
//! (TLS), the environment, and what the server still does around a socket it no longer
//! reads: resets, idle timeouts, the drain deadline, `--max-connections`, no zombie.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::support::net::{IO_TIMEOUT, connect, read_to_end, read_to_reset, read_within, reset};
use crate::support::process::{DEADLINE, Running, run, socketkit};
use crate::support::tools;
use crate::support::{TestResult, wait_until};

/// `socketkit serve exec -l L... EXTRA...` (EXTRA ends with `-- PROGRAM...`).
fn exec(listen: &[&str], extra: &[&str]) -> Running {
    let mut cmd = socketkit();
    cmd.arg("serve").arg("exec");
    for endpoint in listen {
        cmd.args(["-l", endpoint]);
    }
    cmd.args(extra);
    Running::start(cmd, listen.len())
}

#[test]
fn exec_runs_a_program_per_connection_with_the_peer_in_its_environment() {
    let script = "printf '%s %s %s\\n' \"$SOCKETKIT_PEER_ADDR\" \"$SOCKETKIT_PEER_PORT\" \"$SOCKETKIT_LOCAL_ADDR\"; tr a-z A-Z";
    let server = exec(&["127.0.0.1:0"], &["--", "sh", "-c", script]);
    let mut stream = connect(&server.addr());
    stream.write_all(b"shout\n").expect("write");
    stream
        .shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    let out = String::from_utf8(read_to_end(&mut stream)).expect("text");
    let port = stream.local_addr().expect("addr").port();
    assert_eq!(out, format!("127.0.0.1 {port} 127.0.0.1\nSHOUT\n"));
}

/// The service manager's socket is the server's alone: a program that had it could tell
/// the manager READY=1 or STOPPING=1 for the service (found by an outside audit).
#[test]
fn a_program_does_not_get_the_service_managers_socket() {
    let dir = tempfile::tempdir().expect("temp dir");
    let notify = dir.path().join("notify.sock");
    let manager = std::os::unix::net::UnixDatagram::bind(&notify).expect("bind");
    let mut cmd = socketkit();
    cmd.args(["serve", "exec", "-l", "127.0.0.1:0", "--shell", "--"])
        .arg("echo \"${NOTIFY_SOCKET-none} ${WATCHDOG_USEC-none}\"")
        .env("NOTIFY_SOCKET", &notify)
        .env("WATCHDOG_USEC", "60000000");
    let server = Running::start(cmd, 1);
    assert_eq!(read_to_end(&mut connect(&server.addr())), b"none none\n");
    drop(manager);
}

#[test]
fn an_ipv4_client_of_a_dual_stack_listener_is_ipv4_to_the_program_and_the_proxy_header() {
    // The program's environment.
    let script = "echo \"$SOCKETKIT_PEER_ADDR $SOCKETKIT_LOCAL_ADDR\"";
    let server = exec(&[":0"], &["--shell", "--", script]);
    let port = server.port();
    let out = read_to_end(&mut connect(&format!("127.0.0.1:{port}")));
    assert_eq!(out, b"127.0.0.1 127.0.0.1\n");

    // The header `forward --send-proxy v1` writes for it: TCP4, not a mapped TCP6.
    let (target, seen) = crate::support::net::one_shot(|stream| {
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).expect("header");
        assert!(
            line.starts_with("PROXY TCP4 127.0.0.1 127.0.0.1 "),
            "{line:?}"
        );
    });
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", ":0", "--to", &target, "--send-proxy", "v1"]);
    let relay = Running::start(cmd, 1);
    let mut client = connect(&format!("127.0.0.1:{}", relay.port()));
    client.write_all(b"x").expect("write");
    seen.join().expect("the target saw a TCP4 header");
}

#[test]
fn exec_with_shell_and_its_exit_ends_the_connection() {
    let server = exec(
        &["127.0.0.1:0"],
        &["--shell", "--", "echo", "one;", "echo", "two"],
    );
    // The client never half-closes: the program's exit alone must end the connection.
    let mut stream = connect(&server.addr());
    assert_eq!(read_to_end(&mut stream), b"one\ntwo\n");
}

#[test]
fn exec_leaves_no_zombie_and_kills_programs_of_vanished_clients() -> TestResult {
    let server = exec(&["127.0.0.1:0"], &["--", "cat"]);
    for _ in 0..5 {
        let mut stream = connect(&server.addr());
        stream.write_all(b"x")?;
        let mut one = [0u8; 1];
        stream.read_exact(&mut one)?;
        reset(stream); // cat's output has nowhere to go
    }
    wait_for_no_children(&server);
    Ok(())
}

/// A shell script at `path` that prints `hi`, with permission bits `mode`.
fn say_hi_script(path: &std::path::Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, "#!/bin/sh\necho hi\n")?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Issue 9: a program without its execute bit started the server, which then reset every
/// client and said why only at `-v`. Now it is refused at start-up (exit 2, named).
#[test]
fn exec_refuses_a_program_it_may_not_run_at_start_up() -> TestResult {
    let dir = tempfile::tempdir()?;
    say_hi_script(&dir.path().join("no-exec-bit.sh"), 0o644)?;
    let mut cmd = socketkit();
    cmd.current_dir(dir.path()).args([
        "serve",
        "exec",
        "-l",
        "127.0.0.1:0",
        "--",
        "./no-exec-bit.sh",
    ]);
    let out = run(cmd, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 2, "{}", out.stderr);
    assert_eq!(
        out.stderr,
        "error: program './no-exec-bit.sh' is not an executable file (chmod +x?)\n"
    );
    Ok(())
}

/// Issue 9: a program that cannot be started once the server runs (its execute bit was
/// taken away) is logged at the default level, not only at `-v`.
#[test]
fn exec_logs_a_failed_start_at_the_default_level_and_resets_the_client() -> TestResult {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    let program = dir.path().join("greet.sh");
    say_hi_script(&program, 0o755)?;
    let path = program.to_str().ok_or("path")?;
    let server = exec(&["127.0.0.1:0"], &["--", path]);
    assert_eq!(read_to_end(&mut connect(&server.addr())), b"hi\n");
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o644))?;
    // A reset, not an end of stream: the client must not take nothing for a whole answer.
    let mut stream = connect(&server.addr());
    assert_eq!(
        read_to_reset(&mut stream, "a program that cannot start"),
        b""
    );
    let expected = format!("WARN cannot start {path}: permission denied; resetting the connection");
    server.wait_for_stderr(&[&expected], Duration::from_secs(10));
    Ok(())
}

/// Waits (up to 10 s) until `server` has no child process left.
fn wait_for_no_children(server: &Running) {
    wait_until(
        Duration::from_secs(10),
        || format!("children left: {:?}", children_of(server.pid())),
        || children_of(server.pid()).is_empty(),
    );
}

/// The (pid, state) of every process whose parent is `pid`, zombies included.
fn children_of(pid: i32) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The fields after the command name: state, ppid, ...
        let Some(rest) = stat.rsplit(')').next() else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(1) == Some(&pid.to_string().as_str()) {
            found.push((
                entry.file_name().to_string_lossy().into_owned(),
                fields[0].to_owned(),
            ));
        }
    }
    found
}

/// Prints what the program's stdin is: the connection's socket, or a pipe.
pub(crate) const STDIN_KIND: &str =
    "if test -S /dev/stdin; then echo socket; elif test -p /dev/stdin; then echo pipe; fi";

#[test]
fn the_program_has_the_socket_itself_over_tcp_and_unix() -> TestResult {
    if !tools::available("python3") {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("exec.sock");
    let unix = format!("unix:{}", path.display());
    // getpeername(2) and getsockname(2) on descriptor 0 fail on a pipe (ENOTSOCK).
    let script = "import socket\ns = socket.socket(fileno=0)\nprint(s.getpeername(), s.getsockname(), flush=True)";
    let server = exec(
        &["127.0.0.1:0", &unix],
        &["-v", "--", "python3", "-c", script],
    );
    let mut tcp = connect(&server.addr());
    let own = tcp.local_addr()?;
    let line = String::from_utf8(read_to_end(&mut tcp))?;
    assert_eq!(
        line,
        format!(
            "('127.0.0.1', {}) ('127.0.0.1', {})\n",
            own.port(),
            server.port()
        )
    );
    let mut local = UnixStream::connect(&path)?;
    local.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut line = String::new();
    local.read_to_string(&mut line)?;
    // A client of a Unix socket has no name: Python gives it as an empty string.
    assert_eq!(line, format!(" {}\n", path.display()));
    // socketkit did not see the bytes, so its closing lines do not count them.
    wait_until(
        DEADLINE,
        || server.stderr(),
        || server.stderr().matches("DEBUG closed peer=").count() == 2,
    );
    let log = server.stderr();
    assert!(!log.contains("bytes_in"), "{log}");
    assert!(
        log.contains(&format!("closed peer=127.0.0.1:{}", own.port())),
        "{log}"
    );
    Ok(())
}

#[test]
fn an_inetd_mode_socketkit_runs_under_exec() -> TestResult {
    let server = exec(
        &["127.0.0.1:0"],
        &[
            "--",
            env!("CARGO_BIN_EXE_socketkit"),
            "serve",
            "echo",
            "--inetd",
        ],
    );
    let mut stream = connect(&server.addr());
    let mut reader = BufReader::new(stream.try_clone()?);
    for line in ["one line\n", "and another\n"] {
        stream.write_all(line.as_bytes())?;
        let mut echoed = String::new();
        reader.read_line(&mut echoed)?;
        assert_eq!(echoed, line);
    }
    stream.shutdown(std::net::Shutdown::Write)?;
    assert_eq!(read_to_end(&mut stream), b"");
    Ok(())
}

#[test]
fn tls_keeps_pipes_and_counts_the_bytes_a_plain_connection_hands_the_socket_over() -> TestResult {
    let script = format!("{STDIN_KIND}; tr a-z A-Z");
    let server = exec(
        &["127.0.0.1:0", "tls:127.0.0.1:0"],
        &["--tls-self-signed", "-v", "--shell", "--", &script],
    );
    let mut plain = connect(&server.addr());
    plain.write_all(b"shout\n")?;
    plain.shutdown(std::net::Shutdown::Write)?;
    assert_eq!(
        String::from_utf8(read_to_end(&mut plain))?,
        "socket\nSHOUT\n"
    );
    let mut client = socketkit();
    client.args(["connect", &server.endpoints()[1], "--tls-insecure"]);
    let out = run(client, b"shout\n".to_vec(), DEADLINE);
    assert_eq!(
        String::from_utf8(out.stdout)?,
        "pipe\nSHOUT\n",
        "{}",
        out.stderr
    );
    // The TLS session's bytes passed through socketkit: its closing line counts them.
    let tls_listener = format!("listener=\"{}\" bytes_in=", server.endpoints()[1]);
    wait_until(
        DEADLINE,
        || server.stderr(),
        || server.stderr().contains(&tls_listener),
    );
    let log = server.stderr();
    let plain_closed = log
        .lines()
        .find(|l| l.contains(&format!("listener=\"{}\"", server.endpoints()[0])))
        .unwrap_or_default();
    assert!(!plain_closed.contains("bytes_in"), "{log}");
    Ok(())
}

#[test]
fn a_program_that_never_reads_is_killed_when_its_client_resets() -> TestResult {
    // The program neither reads nor writes after its first line: only socketkit, watching
    // the socket, can tell that its client is gone.
    let server = exec(
        &["127.0.0.1:0"],
        &["--", "sh", "-c", "echo started; exec sleep 60"],
    );
    let mut stream = connect(&server.addr());
    let mut line = [0u8; 8];
    stream.read_exact(&mut line)?;
    assert_eq!(&line, b"started\n");
    assert_eq!(children_of(server.pid()).len(), 1);
    reset(stream);
    wait_for_no_children(&server);
    Ok(())
}

#[test]
fn an_idle_timeout_ends_a_handed_over_tcp_connection_and_a_unix_one_on_pipes() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("idle.sock");
    let unix = format!("unix:{}", path.display());
    let script = format!("{STDIN_KIND}; exec sleep 60");
    let server = exec(
        &["127.0.0.1:0", &unix],
        &["--idle-timeout", "300ms", "--shell", "--", &script],
    );
    // TCP: the kernel's clock of the last data each way (TCP_INFO) times the socket out.
    let started = Instant::now();
    let mut tcp = connect(&server.addr());
    assert_eq!(read_to_end(&mut tcp), b"socket\n");
    let lasted = started.elapsed();
    assert!(
        lasted >= Duration::from_millis(300) && lasted < Duration::from_secs(5),
        "{lasted:?}"
    );
    // Unix: no such clock, so the program gets pipes and socketkit times the bytes itself.
    let started = Instant::now();
    let mut local = UnixStream::connect(&path)?;
    local.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut out = Vec::new();
    local.read_to_end(&mut out)?;
    assert_eq!(out, b"pipe\n");
    assert!(started.elapsed() < Duration::from_secs(5));
    wait_for_no_children(&server);
    Ok(())
}

#[test]
fn the_drain_deadline_kills_a_program_on_the_socket() -> TestResult {
    let mut server = exec(
        &["127.0.0.1:0"],
        &[
            "--drain-timeout",
            "300ms",
            "--",
            "sh",
            "-c",
            "echo $$; exec sleep 60",
        ],
    );
    let mut stream = connect(&server.addr());
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut pid = String::new();
    reader.read_line(&mut pid)?;
    let pid: i32 = pid.trim().parse()?;
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait(Duration::from_secs(10)).code(), Some(0));
    // Killed with the server: gone, or a zombie its new parent has yet to reap.
    let state = process_state(pid);
    assert!(matches!(state.as_deref(), None | Some("Z")), "{state:?}");
    // Cut short: the socket's close (the program's copy, as it died) is a reset.
    assert_eq!(
        read_to_reset(&mut stream, "the program cut at the deadline"),
        b""
    );
    Ok(())
}

#[test]
fn a_program_holds_its_connection_slot_until_it_exits() -> TestResult {
    // The program answers its port, then waits for a line before it exits.
    let server = exec(
        &["127.0.0.1:0"],
        &[
            "--max-connections",
            "1",
            "--shell",
            "--",
            "echo $SOCKETKIT_PEER_PORT; read line; echo bye",
        ],
    );
    let mut first = connect(&server.addr());
    let mut first_reader = BufReader::new(first.try_clone()?);
    let mut line = String::new();
    first_reader.read_line(&mut line)?;
    assert_eq!(line.trim(), first.local_addr()?.port().to_string());
    // The second client waits in the backlog while the first program runs.
    let mut second = connect(&server.addr());
    let mut byte = [0u8; 1];
    let waited = read_within(&mut second, &mut byte, Duration::from_millis(500));
    assert!(waited.is_none(), "{waited:?}");
    second.set_read_timeout(Some(IO_TIMEOUT))?;
    first.write_all(b"go\n")?;
    let mut rest = String::new();
    first_reader.read_to_string(&mut rest)?;
    assert_eq!(rest, "bye\n");
    second.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut second_reader = BufReader::new(second);
    let mut line = String::new();
    second_reader.read_line(&mut line)?;
    assert!(line.trim().parse::<u16>().is_ok(), "{line:?}");
    Ok(())
}

/// The processes of process group `group` that are not zombies.
fn live_members_of(group: i32) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // After the command's closing parenthesis: state, ppid, pgrp, ...
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        if fields.get(2) == Some(&group.to_string().as_str()) && fields.first() != Some(&"Z") {
            found.push(pid);
        }
    }
    found
}

/// Reads the first line (the shell's pid, which leads the program's process group).
fn group_of(stream: &std::net::TcpStream) -> Result<i32, Box<dyn std::error::Error>> {
    let mut line = String::new();
    BufReader::new(stream.try_clone()?).read_line(&mut line)?;
    Ok(line.trim().parse()?)
}

#[test]
fn what_the_program_started_ends_with_it_at_the_drain_deadline_and_the_idle_timeout() -> TestResult
{
    // A pipeline: the shell's children hold the socket too.
    let script = "echo $$; cat | cat";
    let mut server = exec(
        &["127.0.0.1:0"],
        &["--drain-timeout", "300ms", "--shell", "--", script],
    );
    let mut stream = connect(&server.addr());
    let group = group_of(&stream)?;
    stream.write_all(b"through the pipeline\n")?;
    let mut line = String::new();
    BufReader::new(stream.try_clone()?).read_line(&mut line)?;
    assert_eq!(line, "through the pipeline\n");
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait(Duration::from_secs(10)).code(), Some(0));
    // The deadline's reset reaches the client though the pipeline held the socket.
    assert_eq!(
        read_to_reset(&mut stream, "a pipeline cut at the deadline"),
        b""
    );
    wait_until(
        Duration::from_secs(5),
        || format!("left of the program's group: {:?}", live_members_of(group)),
        || live_members_of(group).is_empty(),
    );

    // The idle timeout ends a program whose child holds the socket (not `exec sleep`).
    let server = exec(
        &["127.0.0.1:0"],
        &[
            "--idle-timeout",
            "300ms",
            "--shell",
            "--",
            "echo $$; sleep 60; echo done",
        ],
    );
    let started = Instant::now();
    let mut stream = connect(&server.addr());
    let group = group_of(&stream)?;
    let rest = read_to_end(&mut stream);
    assert!(!String::from_utf8_lossy(&rest).contains("done"), "{rest:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    wait_until(
        Duration::from_secs(5),
        || format!("left of the program's group: {:?}", live_members_of(group)),
        || live_members_of(group).is_empty(),
    );
    Ok(())
}

/// The state letter of process `pid` (`R`, `S`, `Z`…), or `None` once it is gone.
fn process_state(pid: i32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit(')').next()?;
    rest.split_whitespace().next().map(str::to_owned)
}
