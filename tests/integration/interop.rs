//! Against the tools people use today: OpenBSD netcat and socat.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

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

/// How much more memory `socketkit connect` may hold while moving [`BIG`] bytes than after a
/// small round trip: its bounded buffers (a few chunks of 256 KiB), nowhere near [`BIG`].
const MAX_GROWTH_KIB: u64 = 8 * 1024;

/// The peak memory of `socketkit connect` after a 4 KiB round trip: its code, its runtime
/// and its allocator's arenas, which depend on the build (a debug build's pages alone are
/// ~12 MiB; a release build peaks at ~8 MiB in all) and not on the bytes moved. Measured once.
fn baseline_rss_kib() -> u64 {
    static BASELINE: OnceLock<u64> = OnceLock::new();
    *BASELINE.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an echo peer");
        let port = listener.local_addr().expect("its address").port();
        let peer = std::thread::spawn(move || -> std::io::Result<()> {
            let (mut stream, _) = listener.accept()?;
            let mut block = [0u8; 4096];
            stream.read_exact(&mut block)?;
            stream.write_all(&block)?;
            // Alive a while longer, so that the peak is sampled after the round trip.
            std::thread::sleep(Duration::from_millis(300));
            stream.shutdown(Shutdown::Both)
        });
        let mut connect = socketkit();
        connect.args(["connect", &format!("127.0.0.1:{port}")]);
        let out = run_streamed_with(connect, payload(4096), false, DEADLINE);
        peer.join().expect("echo peer").expect("echo peer's I/O");
        assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
        assert_eq!(out.stdout_len, 4096);
        out.peak_rss_kib
    })
}

/// Fails when moving [`BIG`] bytes cost `connect` more than [`MAX_GROWTH_KIB`] over its
/// baseline: a bridge that buffered what its peer was slow to take would.
fn assert_constant_memory(peak_rss_kib: u64) {
    let baseline = baseline_rss_kib();
    assert!(
        peak_rss_kib < baseline + MAX_GROWTH_KIB,
        "connect used {peak_rss_kib} KiB moving 64 MiB, {baseline} KiB after 4 KiB"
    );
}

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
    assert_constant_memory(out.peak_rss_kib);
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
        assert_constant_memory(ours.peak_rss_kib);
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
