//! Against the tools people use today: OpenBSD netcat and socat.

use std::process::Command;

use crate::support::TestResult;
use crate::support::net::{free_port, wait_until_listening};
use crate::support::net::{hash, payload};
use crate::support::process::{
    DEADLINE, Running, command, run, run_streamed, run_streamed_with, socketkit,
};
use crate::support::tools;

fn tool(name: &str) -> Command {
    command(std::path::Path::new(name))
}

#[test]
fn nc_receives_exactly_the_six_bytes_of_nihao() {
    if !tools::available("nc") {
        return;
    }
    let mut serve = socketkit();
    serve.args(["serve", "-l", "127.0.0.1:0"]);
    let server = Running::start(serve, 1);
    let mut nc = tool("nc");
    nc.args(["-N", "127.0.0.1", &server.port().to_string()]);
    let out = run(nc, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout, [0xe4, 0xbd, 0xa0, 0xe5, 0xa5, 0xbd]);
}

#[test]
fn connect_round_trips_4_mib_through_socat_cat() -> TestResult {
    let Some((_socat, port)) = socat_echo() else {
        return Ok(()); // socat is not installed (and CI=true is not set)
    };
    let data = payload(4 * 1024 * 1024);
    let mut connect = socketkit();
    connect.args(["connect", &format!("127.0.0.1:{port}")]);
    let out = run(connect, data.clone(), DEADLINE);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout.len(), data.len());
    assert!(
        hash(&out.stdout) == hash(&data),
        "the bytes came back changed"
    );
    Ok(())
}

/// 64 MiB: large enough that a bridge buffering without bound would show in its memory.
const BIG: usize = 64 * 1024 * 1024;

/// The most memory `socketkit connect` may hold while moving [`BIG`] bytes.
const MAX_RSS_KIB: u64 = 16 * 1024;

fn socat_echo() -> Option<(Running, u16)> {
    if !tools::available("socat") {
        return None;
    }
    let mut cmd = tool("socat");
    cmd.args([
        "-d",
        "-d",
        "TCP-LISTEN:0,bind=127.0.0.1,reuseaddr",
        "EXEC:cat",
    ]);
    let socat = Running::start(cmd, 1);
    // socat has no readiness line of its own; -d -d logs "listening on AF=2 127.0.0.1:PORT".
    let stderr = socat.stderr();
    let port = stderr
        .lines()
        .find(|l| l.contains("listening on"))
        .and_then(|line| line.rsplit(':').next()?.parse().ok())
        .unwrap_or_else(|| panic!("socat printed no port: {stderr}"));
    Some((socat, port))
}

/// A Python 3 echo server (a thread per client), printing its port on a readiness line.
const PY_ECHO: &str = r#"
import socket, sys, threading
s = socket.create_server(('127.0.0.1', 0))
print('listening on tcp:127.0.0.1:%d' % s.getsockname()[1], file=sys.stderr, flush=True)
def echo(c):
    while True:
        data = c.recv(65536)
        if not data:
            break
        c.sendall(data)
    c.shutdown(socket.SHUT_WR)
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=echo, args=(c,), daemon=True).start()
"#;

fn round_trip_64_mib(port: u16) {
    let data = payload(BIG);
    let expected = hash(&data);
    let mut connect = socketkit();
    connect.args(["connect", &format!("127.0.0.1:{port}")]);
    let out = run_streamed(connect, data, DEADLINE * 4);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert_eq!(out.stdout_len, BIG);
    assert_eq!(out.stdout_hash, expected, "the bytes came back changed");
    assert!(
        out.peak_rss_kib < MAX_RSS_KIB,
        "connect used {} KiB",
        out.peak_rss_kib
    );
}

#[test]
fn connect_64_mib_through_socat_cat_in_constant_memory() {
    if let Some((_socat, port)) = socat_echo() {
        round_trip_64_mib(port);
    }
}

#[test]
fn connect_64_mib_through_a_python_echo_server() {
    if !tools::available("python3") {
        return;
    }
    let mut py = tool("python3");
    py.args(["-c", PY_ECHO]);
    let server = Running::start(py, 1);
    round_trip_64_mib(server.port());
}

/// OpenBSD nc quits as soon as its network input ends, dropping what it has not sent yet, so
/// each direction is its own transfer, with the receiving side's stdin held open.
#[test]
fn connect_64_mib_each_way_with_nc_listening() {
    if !tools::available("nc") {
        return;
    }
    let data = payload(BIG);
    let expected = (BIG, hash(&data));
    for to_nc in [true, false] {
        let port = free_port();
        let mut nc = tool("nc");
        nc.args(["-N", "-l", "127.0.0.1", &port.to_string()]);
        let nc_input = if to_nc { Vec::new() } else { data.clone() };
        let nc_side =
            std::thread::spawn(move || run_streamed_with(nc, nc_input, !to_nc, DEADLINE * 4));
        wait_until_listening(port);
        let mut connect = socketkit();
        connect.args(["connect", &format!("127.0.0.1:{port}")]);
        let our_input = if to_nc { data.clone() } else { Vec::new() };
        let ours = run_streamed_with(connect, our_input, to_nc, DEADLINE * 4);
        let theirs = nc_side.join().expect("nc thread");
        assert_eq!(ours.status.code(), Some(0), "{}", ours.stderr);
        let received = if to_nc { &theirs } else { &ours };
        assert_eq!(
            (received.stdout_len, received.stdout_hash),
            expected,
            "to nc: {to_nc}"
        );
        assert!(
            ours.peak_rss_kib < MAX_RSS_KIB,
            "connect used {} KiB",
            ours.peak_rss_kib
        );
    }
}

#[test]
fn udp_connect_against_serve_echo_and_daytime() {
    for (service, input, check) in [
        ("echo", &b"a datagram"[..], "a datagram"),
        ("daytime", &b"?"[..], "-UTC\r\n"),
    ] {
        let mut serve = socketkit();
        serve.args(["serve", service, "-l", "udp:127.0.0.1:0"]);
        let server = Running::start(serve, 1);
        let mut connect = socketkit();
        connect.args(["connect", &server.endpoints()[0], "--wait", "300ms"]);
        let out = run(connect, input.to_vec(), DEADLINE);
        assert_eq!(out.code(), 0, "{}", out.stderr);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.ends_with(check), "{service}: {text:?}");
    }
}

#[test]
fn listen_with_nc_both_directions() {
    if !tools::available("nc") {
        return;
    }
    let mut listen = socketkit();
    listen.args(["listen", "127.0.0.1:0"]);
    listen.stdin(std::process::Stdio::piped());
    let mut listener = Running::start_with_stdin(listen, 1, b"from socketkit".to_vec());
    let mut nc = tool("nc");
    nc.args(["-N", "127.0.0.1", &listener.port().to_string()]);
    let out = run(nc, b"from nc".to_vec(), DEADLINE);
    assert_eq!(out.stdout, b"from socketkit");
    assert_eq!(
        listener.wait(DEADLINE).code(),
        Some(0),
        "{}",
        listener.stderr()
    );
    assert_eq!(listener.stdout_text(), "from nc");
}

#[test]
fn forward_between_nc_and_serve_echo_64_mib() {
    if !tools::available("nc") {
        return;
    }
    let mut serve = socketkit();
    serve.args(["serve", "echo", "-l", "127.0.0.1:0"]);
    let echo = Running::start(serve, 1);
    let mut forward = socketkit();
    forward.args(["forward", "-l", "127.0.0.1:0", "--to", &echo.endpoints()[0]]);
    let relay = Running::start(forward, 1);
    let data = payload(BIG);
    let expected = hash(&data);
    let mut nc = tool("nc");
    nc.args(["-N", "127.0.0.1", &relay.port().to_string()]);
    let out = run_streamed(nc, data, DEADLINE * 4);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert_eq!((out.stdout_len, out.stdout_hash), (BIG, expected));
}
