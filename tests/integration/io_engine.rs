//! `--io-engine` through the real binary: which engine serves (the io_uring workers are
//! threads named `socketkit-uring-N`), and what the io_uring engine does with bytes and
//! shutdowns — many echo clients at once (more than its provided buffers), half-close,
//! discard, metrics, a drain that waits and one that is forced. The rest of the suite runs
//! on both engines (`.ci/run` sets `SOCKETKIT_IO_ENGINE`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use crate::balancer::{sample, start_with_metrics};
use crate::support::net::{connect, hash, payload, read_once, read_to_end, read_to_reset};
use crate::support::process::{DEADLINE, Running, run, socketkit};
use crate::support::{TestResult, wait_until};

/// Whether this kernel runs io_uring for us: `serve --io-engine io_uring` binds (its first
/// line is `listening on`), or says why not (exit 1). Under CI it must.
pub(crate) fn io_uring_available() -> bool {
    let mut cmd = socketkit();
    cmd.args(["serve", "--io-engine", "io_uring", "-l", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("socketkit starts");
    let stderr = child.stderr.take().expect("stderr is piped");
    let first = thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stderr).read_line(&mut line);
        line
    });
    let line = first.join().unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    if line.starts_with("listening on") {
        return true;
    }
    let reason = format!("io_uring is not available here ({}): skipped", line.trim());
    assert!(
        std::env::var_os("CI").is_none(),
        "{reason}; under CI the io_uring tests must run"
    );
    eprintln!("{reason}");
    false
}

/// `serve echo` on one io_uring worker on a Unix socket in a temp dir (kept with it), or
/// `None` where the kernel has no io_uring (said, and refused under CI).
pub(crate) fn io_uring_unix_echo() -> Option<(tempfile::TempDir, std::path::PathBuf, Running)> {
    if !io_uring_available() {
        return None;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("echo.sock");
    let mut cmd = socketkit();
    cmd.args(["serve", "echo", "--io-engine", "io_uring", "--workers", "1"])
        .arg("-l")
        .arg(format!("unix:{}", path.display()));
    let server = Running::start(cmd, 1);
    Some((dir, path, server))
}

/// The names of the server's threads.
pub(crate) fn threads(pid: i32) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect()
}

/// The io_uring workers of `server`: they start just after its `listening on` line, so
/// this waits up to 5 s for at least one (an epoll server has none: it waits in vain, and
/// is asked last in each test).
pub(crate) fn uring_workers(server: &Running) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let workers = threads(server.pid())
            .iter()
            .filter(|name| name.starts_with("socketkit-uring"))
            .count();
        if workers > 0 || Instant::now() >= deadline {
            return workers;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn serve(args: &[&str]) -> Running {
    let mut cmd = socketkit();
    cmd.arg("serve").args(args);
    Running::start(cmd, 1)
}

/// The greeting on io_uring with `workers` workers.
pub(crate) fn greet_on_rings(workers: &str) -> Running {
    serve(&[
        "--io-engine",
        "io_uring",
        "--workers",
        workers,
        "-l",
        "127.0.0.1:0",
    ])
}

/// `service` (the greeting when empty) on io_uring with one worker.
pub(crate) fn serve_on_one_ring(service: &[&str]) -> Running {
    let mut cmd = socketkit();
    cmd.arg("serve").args(service).args([
        "--io-engine",
        "io_uring",
        "--workers",
        "1",
        "-l",
        "127.0.0.1:0",
    ]);
    Running::start(cmd, 1)
}

#[test]
fn each_engine_serves_the_greeting_and_only_io_uring_starts_workers() {
    if !io_uring_available() {
        return;
    }
    let ring = greet_on_rings("2");
    let epoll = serve(&[
        "--io-engine",
        "epoll",
        "--workers",
        "2",
        "-l",
        "127.0.0.1:0",
    ]);
    for server in [&ring, &epoll] {
        for _ in 0..20 {
            assert_eq!(read_to_end(&mut connect(&server.addr())), "你好".as_bytes());
        }
    }
    assert_eq!(uring_workers(&ring), 2, "{:?}", threads(ring.pid()));
    assert_eq!(uring_workers(&epoll), 0, "{:?}", threads(epoll.pid()));
    // A rule per connection is epoll's to apply: the ring stays out of it.
    let limited = serve(
        &["--io-engine", "io_uring", "--max-connections", "5"]
            .into_iter()
            .chain(["-l", "127.0.0.1:0"])
            .collect::<Vec<_>>(),
    );
    assert_eq!(
        read_to_end(&mut connect(&limited.addr())),
        "你好".as_bytes()
    );
    assert_eq!(uring_workers(&limited), 0);
}

/// Reads what a server sends until it closes; a reset after bytes ends the read like a
/// close (a server's close with the client's bytes unread resets the connection, after
/// the reply it sent).
fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut chunk = [0; 64];
    loop {
        match read_once(stream, &mut chunk) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&chunk[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => return all,
            Err(err) => panic!("read after {} bytes: {err}", all.len()),
        }
    }
}

#[test]
fn each_engine_greets_a_client_that_writes_before_it_reads() {
    if !io_uring_available() {
        return;
    }
    // The ring holds the greeting back (`MSG_MORE`) for the FIN to go with it: a close
    // that found the client's bytes unread then would reset the connection and throw the
    // greeting away. The client writes at once, so its bytes arrive while the server
    // answers.
    for engine in ["io_uring", "epoll"] {
        let server = serve(&["--io-engine", engine, "--workers", "1", "-l", "127.0.0.1:0"]);
        for round in 0..200 {
            let mut stream = connect(&server.addr());
            stream
                .write_all(&[b'x'; 100])
                .expect("write before reading");
            assert_eq!(
                read_until_closed(&mut stream),
                "你好".as_bytes(),
                "{engine}, client {round}"
            );
        }
    }
}

/// How many descriptors a process has open.
fn open_descriptors(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

#[test]
fn io_uring_closes_every_greeted_connection() {
    if !io_uring_available() {
        return;
    }
    // A reply's slot is freed before its close is submitted (the close's completion is
    // skipped): the descriptors must all be closed all the same.
    let server = serve_on_one_ring(&[]);
    assert_eq!(uring_workers(&server), 1);
    assert_eq!(read_to_end(&mut connect(&server.addr())), "你好".as_bytes());
    let before = open_descriptors(server.pid());
    for _ in 0..300 {
        assert_eq!(read_to_end(&mut connect(&server.addr())), "你好".as_bytes());
    }
    wait_until(
        Duration::from_secs(5),
        || {
            format!(
                "{} descriptors open after 300 greetings, {before} before",
                open_descriptors(server.pid())
            )
        },
        || open_descriptors(server.pid()) <= before,
    );
}

#[test]
fn a_bad_engine_name_is_a_usage_error_from_the_flag_and_from_the_variable() {
    let out = run(
        {
            let mut cmd = socketkit();
            cmd.args(["serve", "--io-engine", "kqueue", "-l", "127.0.0.1:0"]);
            cmd
        },
        Vec::new(),
        DEADLINE,
    );
    assert_eq!(out.code(), 2, "{}", out.stderr);
    assert!(out.stderr.contains("kqueue"), "{}", out.stderr);
    let out = run(
        {
            let mut cmd = socketkit();
            cmd.args(["serve", "-l", "127.0.0.1:0"])
                .env("SOCKETKIT_IO_ENGINE", "kqueue");
            cmd
        },
        Vec::new(),
        DEADLINE,
    );
    assert_eq!(out.code(), 2, "{}", out.stderr);
    assert_eq!(
        out.stderr.trim(),
        "error: SOCKETKIT_IO_ENGINE: unknown I/O engine 'kqueue' (expected auto, epoll or io_uring)"
    );
    // Set but empty (`Environment=SOCKETKIT_IO_ENGINE=`, `export VAR=$UNSET`) is unset.
    let mut cmd = socketkit();
    cmd.args(["serve", "-l", "127.0.0.1:0"])
        .env("SOCKETKIT_IO_ENGINE", "");
    let server = Running::start(cmd, 1);
    assert_eq!(server.endpoints().len(), 1);
}

/// Sends `data` and half-closes on one thread while reading the echo on this one.
pub(crate) fn echo_round_trip(addr: &str, data: Vec<u8>) -> Vec<u8> {
    let mut stream = connect(addr);
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("read timeout");
    let mut writer = stream.try_clone().expect("clone");
    let sending = thread::spawn(move || {
        writer.write_all(&data).expect("send");
        writer.shutdown(Shutdown::Write).expect("half-close");
    });
    let echoed = read_to_end(&mut stream);
    sending.join().expect("sender");
    echoed
}

#[test]
fn io_uring_echo_returns_every_byte_to_more_clients_than_it_has_buffers() {
    if !io_uring_available() {
        return;
    }
    let server = serve(&["echo", "--io-engine", "io_uring", "-l", "127.0.0.1:0"]);
    assert!(uring_workers(&server) >= 1);
    let addr = server.addr();
    // 100 clients at once, each 256 KiB: far more bytes in flight than the workers' 64
    // buffers of 16 KiB, so receives wait for buffers and come back to them.
    let clients: Vec<_> = (0..100)
        .map(|i| {
            let addr = addr.clone();
            thread::spawn(move || {
                let mut data = payload(256 * 1024);
                data.rotate_left(i * 7);
                let want = hash(&data);
                let got = echo_round_trip(&addr, data);
                (got.len(), hash(&got) == want)
            })
        })
        .collect();
    for client in clients {
        let (len, same) = client.join().expect("client");
        assert_eq!(len, 256 * 1024);
        assert!(same, "the echo differs from what was sent");
    }
    // One big transfer, and an empty one.
    let data = payload(8 << 20);
    let want = hash(&data);
    assert_eq!(hash(&echo_round_trip(&addr, data)), want);
    assert!(echo_round_trip(&addr, Vec::new()).is_empty());
}

#[test]
fn io_uring_echo_serves_more_connections_than_it_registers_descriptors() {
    if !io_uring_available() {
        return;
    }
    // The worker registers the descriptors of streams that have sent 4 times, 1,024 at
    // most; the rest use plain ones.
    const OPEN: usize = 1_100;
    let soft = crate::support::descriptor_limits().rlim_cur;
    if soft < OPEN as u64 + 200 {
        eprintln!(
            "the descriptor limit ({soft}) is under {}: skipped",
            OPEN + 200
        );
        return;
    }
    let server = serve_on_one_ring(&["echo"]);
    let addr = server.addr();
    let mut open: Vec<TcpStream> = (0..OPEN).map(|_| connect(&addr)).collect();
    for round in 0..6 {
        for (i, stream) in open.iter_mut().enumerate().rev() {
            let data = format!("connection {i}, round {round}\n").into_bytes();
            stream
                .set_read_timeout(Some(DEADLINE))
                .expect("read timeout");
            stream.write_all(&data).expect("send");
            let mut echoed = vec![0; data.len()];
            stream.read_exact(&mut echoed).expect("echo");
            assert_eq!(echoed, data, "connection {i}");
        }
    }
}

#[test]
fn io_uring_discard_reads_everything_and_closes_at_the_clients_end() {
    if !io_uring_available() {
        return;
    }
    let server = serve(&["discard", "--io-engine", "io_uring", "-l", "127.0.0.1:0"]);
    let mut stream = connect(&server.addr());
    stream.write_all(&payload(4 << 20)).expect("send");
    stream.shutdown(Shutdown::Write).expect("half-close");
    assert!(read_to_end(&mut stream).is_empty(), "discard sends nothing");
}

#[test]
fn io_uring_connections_are_counted_in_the_metrics() -> TestResult {
    if !io_uring_available() {
        return Ok(());
    }
    let mut cmd = socketkit();
    cmd.args([
        "serve",
        "echo",
        "--io-engine",
        "io_uring",
        "-l",
        "127.0.0.1:0",
    ])
    .args(["--metrics", "127.0.0.1:0"]);
    let (server, metrics) = start_with_metrics(cmd);
    assert!(uring_workers(&server) >= 1);
    for _ in 0..3 {
        assert_eq!(echo_round_trip(&server.addr(), payload(1000)).len(), 1000);
    }
    let listener = format!("listener=\"tcp:{}\"", server.addr());
    // The closes complete on the server's own time: wait for the last to be counted.
    wait_until(
        Duration::from_secs(5),
        || "connections still counted as open".to_owned(),
        || sample(&metrics, "socketkit_connections_active", &listener) == 0,
    );
    assert_eq!(
        sample(&metrics, "socketkit_connections_accepted_total", &listener),
        3
    );
    assert_eq!(
        sample(&metrics, "socketkit_bytes_received_total", &listener),
        3000
    );
    assert_eq!(
        sample(&metrics, "socketkit_bytes_sent_total", &listener),
        3000
    );
    assert_eq!(
        sample(
            &metrics,
            "socketkit_connection_duration_seconds_count",
            &listener
        ),
        3
    );
    Ok(())
}

#[test]
fn io_uring_drain_waits_for_open_connections_then_forces_them_at_the_deadline() {
    if !io_uring_available() {
        return;
    }
    let mut server = serve(&[
        "echo",
        "--io-engine",
        "io_uring",
        "--drain-timeout",
        "2s",
        "-l",
        "127.0.0.1:0",
    ]);
    let addr = server.addr();
    let mut open = connect(&addr);
    open.set_read_timeout(Some(DEADLINE)).expect("timeout");
    server.signal(libc::SIGTERM);
    // Draining: the open connection is still echoed, new ones are refused.
    wait_until(
        Duration::from_secs(5),
        || "the listener stays open while draining".to_owned(),
        || TcpStream::connect(&addr).is_err(),
    );
    open.write_all(b"still here").expect("send while draining");
    let mut buf = [0u8; 10];
    open.read_exact(&mut buf).expect("echoed while draining");
    assert_eq!(&buf, b"still here");
    // The client never closes: the deadline does, and the server exits cleanly.
    let started = Instant::now();
    let status = server.wait(Duration::from_secs(10));
    assert!(status.success(), "{status:?}: {}", server.stderr());
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "closed before the drain deadline"
    );
    // Cut short, so a reset: a clean end would read as a complete exchange.
    assert!(
        read_to_reset(&mut open, "at the deadline").is_empty(),
        "closed at the deadline"
    );
    server.assert_said("closed 1 connection(s) still open");
}

/// A server restarted the moment its predecessor was killed gets the port: a killed
/// io_uring server's listener outlives the reaped process by a few milliseconds (the kernel
/// tears the ring down after it), and the bind waits that long rather than failing with
/// "address already in use" (it failed 3 times in 3 before it did).
#[test]
fn a_killed_io_uring_servers_port_is_taken_again_at_once() {
    if !io_uring_available() {
        return;
    }
    let listen = format!("127.0.0.1:{}", crate::support::net::free_port());
    let serve = || {
        let mut cmd = socketkit();
        cmd.args([
            "serve",
            "greeting",
            "--io-engine",
            "io_uring",
            "-l",
            &listen,
        ]);
        Running::start(cmd, 1)
    };
    for _ in 0..3 {
        let first = serve();
        for _ in 0..20 {
            assert_eq!(read_to_end(&mut connect(&listen)), "你好".as_bytes());
        }
        // SIGKILL, and reaped.
        drop(first);
        let second = serve();
        assert_eq!(read_to_end(&mut connect(&listen)), "你好".as_bytes());
        drop(second);
    }
}
