//! `socketkit serve` (greeting): readiness lines, concurrency, signals, restarts.

use std::io::Read;
use std::time::Duration;

use crate::support::TestResult;
use crate::support::net::{accept_queues, connect, queued_per_listener, read_to_end};
use crate::support::process::{Running, socketkit};

fn serve(args: &[&str]) -> Running {
    let mut cmd = socketkit();
    cmd.arg("serve").args(args);
    let count = args.iter().filter(|a| **a == "-l").count().max(1);
    Running::start(cmd, count)
}

#[test]
fn readiness_line_names_the_real_port() {
    let server = serve(&["-l", "127.0.0.1:0"]);
    assert!(server.endpoints()[0].starts_with("tcp:127.0.0.1:"));
    assert_ne!(server.port(), 0);
    server.assert_said(" (greeting)");
}

#[test]
fn greets_with_nihao_and_closes() {
    let server = serve(&["-l", "127.0.0.1:0"]);
    let mut client = connect(&server.addr());
    assert_eq!(read_to_end(&mut client), "你好".as_bytes());
}

#[test]
fn message_option_replaces_the_greeting() {
    let server = serve(&["-l", "127.0.0.1:0", "--message", "hello, world\n"]);
    assert_eq!(read_to_end(&mut connect(&server.addr())), b"hello, world\n");
}

#[test]
fn several_listeners_including_ipv6_and_unix() -> TestResult {
    let dir = tempfile::tempdir()?;
    let sock = dir.path().join("greet.sock");
    let unix = format!("unix:{}", sock.display());
    let server = serve(&["-l", "127.0.0.1:0", "-l", "[::1]:0", "-l", &unix]);
    let endpoints = server.endpoints().to_vec();
    assert!(endpoints[1].starts_with("tcp:[::1]:"), "{endpoints:?}");
    assert_eq!(endpoints[2], unix);
    let v6 = endpoints[1].trim_start_matches("tcp:");
    assert_eq!(read_to_end(&mut connect(v6)), "你好".as_bytes());
    let mut stream = std::os::unix::net::UnixStream::connect(&sock)?;
    let mut got = Vec::new();
    stream.read_to_end(&mut got)?;
    assert_eq!(got, "你好".as_bytes());
    drop(server);
    Ok(())
}

#[test]
fn empty_host_listens_on_ipv4_and_ipv6() {
    let server = serve(&["-l", ":0"]);
    let port = server.port();
    assert_eq!(
        read_to_end(&mut connect(&format!("127.0.0.1:{port}"))),
        "你好".as_bytes()
    );
    assert_eq!(
        read_to_end(&mut connect(&format!("[::1]:{port}"))),
        "你好".as_bytes()
    );
}

/// The `-v` lines name an IPv4 client of a dual-stack `:PORT` listener as IPv4, as the
/// access rules, a PROXY header and an exec program's environment do: a log watcher that
/// bans `peer=` addresses must find the one it knows. On both engines (the greeting, the
/// echo).
#[test]
fn verbose_lines_name_an_ipv4_client_of_a_dual_stack_listener_as_ipv4() {
    let ring = crate::io_engine::io_uring_available();
    for engine in ["epoll", "io_uring"]
        .into_iter()
        .filter(|e| ring || *e == "epoll")
    {
        for service in ["greeting", "echo"] {
            let server = serve(&[service, "-l", ":0", "-v", "--io-engine", engine]);
            let port = server.port();
            let mut client = connect(&format!("127.0.0.1:{port}"));
            let _ = client.shutdown(std::net::Shutdown::Write);
            let _ = read_to_end(&mut client);
            server.wait_for_stderr(
                &["peer=127.0.0.1:", &format!("local=127.0.0.1:{port}")],
                Duration::from_secs(5),
            );
            assert!(
                !server.stderr().contains("::ffff:"),
                "{engine} {service}: {}",
                server.stderr()
            );
        }
    }
}

#[test]
fn many_clients_at_once_are_all_greeted() {
    let server = serve(&["-l", "127.0.0.1:0"]);
    let addr = server.addr();
    // Connect them all first, then read: a server that served one client at a time would
    // still pass, but one that lost or mixed up connections under a burst would not.
    let mut clients: Vec<_> = (0..200).map(|_| connect(&addr)).collect();
    for client in &mut clients {
        assert_eq!(read_to_end(client), "你好".as_bytes());
    }
}

#[test]
fn sigterm_and_sigint_exit_zero_and_the_port_is_free_again() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let mut server = serve(&["-l", "127.0.0.1:0"]);
        let addr = server.addr();
        // A connection in TIME_WAIT on the server side must not stop the restart.
        assert_eq!(read_to_end(&mut connect(&addr)), "你好".as_bytes());
        server.signal(signal);
        let status = server.wait(Duration::from_secs(10));
        assert_eq!(status.code(), Some(0), "{}", server.stderr());
        let again = serve(&["-l", &addr]);
        assert_eq!(again.addr(), addr);
    }
}

#[test]
fn unix_socket_file_is_removed_on_exit() -> TestResult {
    let dir = tempfile::tempdir()?;
    let sock = dir.path().join("gone.sock");
    let mut server = serve(&["-l", &format!("unix:{}", sock.display())]);
    assert!(sock.exists());
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait(Duration::from_secs(10)).code(), Some(0));
    assert!(!sock.exists(), "the socket file is removed on exit");
    Ok(())
}

/// LISTEN sockets on TCP `port`.
pub(crate) fn listeners_on(port: u16) -> usize {
    accept_queues(port).len()
}

/// The default backlog (4096) holds a connection storm that 1024 would not: with the server
/// stopped, 1,500 clients complete their handshakes and wait in the listener's queue, and
/// each is greeted once it runs again.
#[test]
fn the_default_backlog_holds_1500_clients_waiting_at_once() {
    // The kernel caps every backlog at net.core.somaxconn (4096 since Linux 5.4).
    let cap = std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap_or_default();
    if cap.trim().parse::<u32>().is_ok_and(|cap| cap <= 1500) {
        eprintln!("skipped: net.core.somaxconn is {}, under 1,501", cap.trim());
        return;
    }
    // 1,500 clients at once, beside the tests that run meanwhile.
    crate::support::allow_descriptors(4096);
    let server = serve(&["-l", "127.0.0.1:0", "--workers", "1"]);
    let (queues, mut clients) = queued_per_listener(&server, 1500);
    assert_eq!(queues, [1500]);
    for client in &mut clients {
        assert_eq!(read_to_end(client), "你好".as_bytes());
    }
}

#[test]
fn workers_get_a_reuseport_listener_each_and_serve_every_client() {
    let server = serve(&["-l", "127.0.0.1:0", "--workers", "3"]);
    // This kernel has SO_REUSEPORT: one listener per worker (docs/platform-notes.md).
    assert_eq!(listeners_on(server.port()), 3);
    let addr = server.addr();
    let mut clients: Vec<_> = (0..200).map(|_| connect(&addr)).collect();
    for client in &mut clients {
        assert_eq!(read_to_end(client), "你好".as_bytes());
    }
    let single = serve(&["-l", "127.0.0.1:0", "--workers", "1"]);
    assert_eq!(listeners_on(single.port()), 1);
}

#[test]
fn json_logs_are_one_object_per_line_after_the_plain_listening_line() {
    let mut server = serve(&["echo", "-l", "127.0.0.1:0", "-v", "--log-format", "json"]);
    let mut client = connect(&server.addr());
    std::io::Write::write_all(&mut client, b"x").expect("write");
    drop(client);
    std::thread::sleep(Duration::from_millis(300));
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait(Duration::from_secs(10)).code(), Some(0));
    let log = server.stderr();
    let mut lines = log.lines();
    let first = lines.next().expect("a first line");
    assert!(first.contains("listening on tcp:127.0.0.1:"), "{log}");
    let objects: Vec<serde_json::Value> = lines
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect();
    assert!(!objects.is_empty(), "-v logs the connection: {log}");
    for object in &objects {
        assert!(
            object["ts"].as_str().is_some_and(|ts| ts.ends_with('Z')),
            "{object}"
        );
        assert!(
            object["level"].is_string() && object["msg"].is_string(),
            "{object}"
        );
    }
    assert!(
        objects.iter().any(|o| o["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:"))),
        "a connection's line names its peer: {log}"
    );
}

/// A refusal's line at `-v` has the fields of a closing line that a refusal has: the peer,
/// the local address and the listener (it had only the peer), on both engines.
#[test]
fn a_refusal_logs_its_peer_local_address_and_listener() {
    let mut engines = vec!["epoll"];
    if crate::io_engine::io_uring_available() {
        engines.push("io_uring");
    }
    for engine in engines {
        let mut server = serve(&[
            "echo",
            "-l",
            "127.0.0.1:0",
            "-v",
            "--log-format",
            "json",
            "--deny",
            "127.0.0.1",
            "--io-engine",
            engine,
        ]);
        let mut client = connect(&server.addr());
        let _ = std::io::Write::write_all(&mut client, b"x");
        server.wait_for_stderr(&["refused"], Duration::from_secs(10));
        server.signal(libc::SIGTERM);
        assert_eq!(server.wait(Duration::from_secs(10)).code(), Some(0));
        let log = server.stderr();
        let refusal: serde_json::Value = log
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .find(|o: &serde_json::Value| o["reason"] == "acl")
            .unwrap_or_else(|| panic!("{engine}: no refusal line: {log}"));
        let addr = server.addr();
        assert_eq!(
            refusal["listener"],
            format!("tcp:{addr}"),
            "{engine}: {refusal}"
        );
        assert_eq!(refusal["local"], addr, "{engine}: {refusal}");
        assert!(
            refusal["peer"]
                .as_str()
                .is_some_and(|p| p.starts_with("127.0.0.1:")),
            "{engine}: {refusal}"
        );
    }
}

/// With `--shutdown-delay` the listeners close after the delay, and the log says so then:
/// the signal's line used to claim them closed while they still accepted.
#[test]
fn a_delayed_shutdown_logs_the_listeners_closing_after_the_delay() {
    let mut server = serve(&["-l", "127.0.0.1:0", "--shutdown-delay", "300ms"]);
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait(Duration::from_secs(10)).code(), Some(0));
    let log = server.stderr();
    let delay = log.find("accepting for 300ms more");
    let closed = log.find("listeners closed, draining connections");
    assert!(
        delay.is_some() && closed.is_some() && delay < closed,
        "{log}"
    );
}

/// Options that shape connections mean nothing to a server with only datagram listeners:
/// refused (exit 2) rather than silently ignored; beside a stream listener they apply to it.
#[test]
fn stream_only_options_are_refused_when_every_listener_takes_datagrams() {
    let cases: [&[&str]; 5] = [
        &["--backlog", "5"],
        &["--max-connections", "3"],
        &["--idle-timeout", "1s"],
        &["--drain-timeout", "1s"],
        &["--proxy-protocol", "--trusted-proxy", "127.0.0.1"],
    ];
    for extra in cases {
        let mut cmd = socketkit();
        cmd.args(["serve", "echo", "-l", "udp:127.0.0.1:0"])
            .args(extra);
        let out = crate::support::process::run(cmd, Vec::new(), Duration::from_secs(10));
        assert_eq!(out.code(), 2, "{extra:?}: {}", out.stderr);
        assert_eq!(
            out.stderr,
            format!(
                "error: {} applies to stream listeners only, and every listener here is a \
                 datagram one (such as udp:127.0.0.1:0)\n",
                extra[0]
            )
        );
    }
    let mut mixed = serve(&[
        "echo",
        "-l",
        "udp:127.0.0.1:0",
        "-l",
        "127.0.0.1:0",
        "--backlog",
        "5",
    ]);
    mixed.signal(libc::SIGTERM);
    assert_eq!(mixed.wait(Duration::from_secs(10)).code(), Some(0));
}

#[test]
fn sighup_without_rules_changes_nothing_and_the_files_go_at_exit() -> TestResult {
    let dir = tempfile::tempdir()?;
    let sock = dir.path().join("hup.sock");
    let pid_file = dir.path().join("hup.pid");
    for command in ["serve", "forward"] {
        let mut cmd = socketkit();
        cmd.arg(command)
            .args(["-l", &format!("unix:{}", sock.display())])
            .arg("--pid-file")
            .arg(&pid_file);
        if command == "forward" {
            cmd.args(["--to", "127.0.0.1:9"]);
        }
        let mut server = Running::start(cmd, 1);
        server.signal(libc::SIGHUP);
        // Its default action would have killed the server: it says so, and still answers.
        server.wait_for_stderr(
            &["SIGHUP: nothing to reload (no access rules, no TLS certificate files)"],
            Duration::from_secs(10),
        );
        let mut stream = std::os::unix::net::UnixStream::connect(&sock)?;
        stream.set_read_timeout(Some(crate::support::net::IO_TIMEOUT))?;
        let _ = stream.read_to_end(&mut Vec::new());
        server.signal(libc::SIGTERM);
        assert_eq!(
            server.wait(Duration::from_secs(10)).code(),
            Some(0),
            "{command}"
        );
        assert!(
            !sock.exists() && !pid_file.exists(),
            "{command}: files left"
        );
    }
    Ok(())
}
