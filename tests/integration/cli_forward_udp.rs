//! `forward -l udp:… --to udp:…` against a Python UDP server that answers each datagram with
//! the sender's port, so the test sees which upstream socket carried it: one per client, a
//! fresh one after the idle timeout. Clients are Rust sockets and socat. The metrics and
//! shutdown tests relay to `socketkit serve echo` instead, and need no external tool.

use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::balancer::{sample, start_with_metrics};
use crate::support::net::{IO_TIMEOUT, http_get};
use crate::support::process::{DEADLINE, Running, command, run, socketkit};
use crate::support::tools;

/// Answers `DATA from PORT`, PORT being the sender's: which upstream socket the relay used.
const PY_UPSTREAM: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('127.0.0.1', 0))
print('listening on udp:127.0.0.1:%d' % s.getsockname()[1], file=sys.stderr, flush=True)
while True:
    data, peer = s.recvfrom(65535)
    s.sendto(data + (' from %d' % peer[1]).encode(), peer)
"#;

fn upstream() -> Option<Running> {
    if !tools::available("python3") {
        return None;
    }
    let mut cmd = command(Path::new("python3"));
    cmd.args(["-c", PY_UPSTREAM]);
    Some(Running::start(cmd, 1))
}

fn forward(upstream: &Running, extra: &[&str]) -> Running {
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "udp:127.0.0.1:0", "--to"])
        .arg(&upstream.endpoints()[0])
        .args(extra);
    Running::start(cmd, 1)
}

fn client() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    socket
}

/// Sends `data` through the relay and returns the upstream port named in the answer.
fn ask(client: &UdpSocket, relay: u16, data: &str) -> u16 {
    client
        .send_to(data.as_bytes(), ("127.0.0.1", relay))
        .expect("send");
    let mut buf = [0u8; 256];
    let (n, from) = client
        .recv_from(&mut buf)
        .expect("an answer through the relay");
    assert_eq!(from.port(), relay, "the answer comes from the relay's port");
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    let port = text
        .strip_prefix(&format!("{data} from "))
        .unwrap_or_else(|| panic!("unexpected answer {text:?}"));
    port.parse().expect("a port")
}

#[test]
fn each_client_gets_its_own_upstream_socket() {
    let Some(upstream) = upstream() else { return };
    let relay = forward(&upstream, &[]);
    let (a, b) = (client(), client());
    let a_first = ask(&a, relay.port(), "one");
    let b_first = ask(&b, relay.port(), "two");
    assert_ne!(a_first, b_first, "two clients, two upstream sockets");
    assert_eq!(
        ask(&a, relay.port(), "three"),
        a_first,
        "a client keeps its socket"
    );
    assert_eq!(ask(&b, relay.port(), "four"), b_first);
}

#[test]
fn an_idle_client_gets_a_fresh_upstream_socket() {
    let Some(upstream) = upstream() else { return };
    let relay = forward(&upstream, &["--idle-timeout", "300ms", "-v"]);
    let a = client();
    let first = ask(&a, relay.port(), "before");
    std::thread::sleep(Duration::from_millis(1200));
    let second = ask(&a, relay.port(), "after");
    assert_ne!(first, second, "the idle upstream socket was closed");
    relay.assert_said("idle");
}

#[test]
fn socat_client_through_the_relay() {
    let Some(upstream) = upstream() else { return };
    if !tools::available("socat") {
        return;
    }
    let relay = forward(&upstream, &[]);
    let mut cmd: Command = command(Path::new("socat"));
    cmd.args(["-T", "2", "-", &format!("UDP:127.0.0.1:{}", relay.port())]);
    let out = run(cmd, b"via socat".to_vec(), DEADLINE);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("via socat from "),
        "{text:?} {}",
        out.stderr
    );
}

/// A target that answers `count` datagrams with `name`, on a thread of its own.
fn named_target(name: &'static str, count: usize) -> (String, std::thread::JoinHandle<()>) {
    let socket = client();
    let endpoint = format!("udp:{}", socket.local_addr().expect("addr"));
    let serving = std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        for _ in 0..count {
            let Ok((_, peer)) = socket.recv_from(&mut buf) else {
                return; // the test has failed already, or will on its answers
            };
            socket.send_to(name.as_bytes(), peer).expect("answer");
        }
    });
    (endpoint, serving)
}

/// Asks a [`named_target`] through the relay on `port` who it is.
fn who(client: &UdpSocket, port: u16) -> String {
    client.send_to(b"who", ("127.0.0.1", port)).expect("send");
    let mut buf = [0u8; 16];
    let (n, _) = client.recv_from(&mut buf).expect("an answer");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn several_targets_take_new_clients_in_turn_and_each_client_keeps_its_own() {
    let (a, serving_a) = named_target("A", 3);
    let (b, serving_b) = named_target("B", 2);
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "udp:127.0.0.1:0", "--to", &a, "--to", &b]);
    let relay = Running::start(cmd, 1);
    relay.assert_said(&format!("(forward to {a}, {b} in turn)"));
    let clients: Vec<UdpSocket> = (0..4).map(|_| client()).collect();
    let answer = |client: &UdpSocket| who(client, relay.port());
    let first: String = clients.iter().map(answer).collect();
    assert_eq!(first, "ABAB");
    // The first client's upstream socket still lives: it stays with A.
    assert_eq!(answer(&clients[0]), "A");
    serving_a.join().expect("A");
    serving_b.join().expect("B");
}

#[test]
fn source_balance_keeps_a_client_address_on_one_target_whatever_its_port() {
    // Each answers until the test has sent nothing for IO_TIMEOUT (then its receive fails).
    let (a, _) = named_target("A", usize::MAX);
    let (b, _) = named_target("B", usize::MAX);
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "udp:127.0.0.1:0", "--balance", "source"])
        .args(["--to", &a, "--to", &b]);
    let relay = Running::start(cmd, 1);
    relay.assert_said(&format!("(forward to {a}, {b} by source address)"));
    let answer_from = |source: &str| {
        let client = UdpSocket::bind((source, 0)).expect("bind");
        client.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        who(&client, relay.port())
    };
    // Two sockets (two ports, two upstream sockets) per address: the same target.
    let chosen: Vec<String> = (1..=8)
        .map(|host| {
            let source = format!("127.0.0.{host}");
            let first = answer_from(&source);
            assert_eq!(answer_from(&source), first, "{source} moved");
            first
        })
        .collect();
    assert!(
        chosen.iter().any(|got| got == "A") && chosen.iter().any(|got| got == "B"),
        "{chosen:?}"
    );
}

#[test]
fn udp_forwarding_refuses_what_it_cannot_do() {
    for (args, words) in [
        (
            &["forward", "-l", "udp:127.0.0.1:0", "--to", "127.0.0.1:80"][..],
            "udp: or unixgram: target",
        ),
        (
            &[
                "forward",
                "-l",
                "udp:127.0.0.1:0",
                "--to",
                "udp:127.0.0.1:53",
                "--workers",
                "2",
            ],
            "--workers",
        ),
        (
            &["forward", "-l", "127.0.0.1:0", "--to", "udp:127.0.0.1:53"],
            "only TCP and Unix stream targets",
        ),
        (
            &[
                "forward",
                "-l",
                "udp:127.0.0.1:0",
                "--to",
                "udp:127.0.0.1:9",
                "--to",
                "udp:127.0.0.1:10",
                "--balance",
                "first",
            ],
            "error: --balance first applies to stream forwarding only",
        ),
    ] {
        let mut cmd = socketkit();
        cmd.args(args);
        let out = run(cmd, Vec::new(), DEADLINE);
        assert_eq!(out.code(), 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(words), "{args:?}: {}", out.stderr);
    }
}

/// The stream options a datagram relay has no use for are refused by name, those with a
/// default too, when they are written: never accepted and ignored.
#[test]
fn udp_forwarding_refuses_stream_options_even_with_defaults() {
    for (extra, why) in [
        (&["--backlog", "1024"][..], "no listen(2) backlog"),
        (&["--timeout", "10s"][..], "not connected to"),
        (&["--drain-timeout", "5s"][..], "no connections to drain"),
        (&["--send-proxy", "v2"][..], "PROXY headers"),
        (
            &["--proxy-protocol", "--trusted-proxy", "127.0.0.1"][..],
            "PROXY headers",
        ),
    ] {
        let mut cmd = socketkit();
        cmd.args([
            "forward",
            "-l",
            "udp:127.0.0.1:0",
            "--to",
            "udp:127.0.0.1:9",
        ])
        .args(extra);
        let out = run(cmd, Vec::new(), DEADLINE);
        assert_eq!(out.code(), 2, "{extra:?}: {}", out.stderr);
        let line = out.stderr.trim_end();
        assert!(
            line.starts_with(&format!(
                "error: {} applies to stream forwarding only",
                extra[0]
            )) && line.contains(why)
                && !line.contains('\n'),
            "{extra:?}: {line}"
        );
    }
}

/// `socketkit serve echo` on a UDP port of its own.
/// `forward -l udp:127.0.0.1:0 --metrics 127.0.0.1:0` with `args` (its targets and more),
/// and its metrics address.
pub(crate) fn metered_relay(args: &[&str]) -> (Running, String) {
    let mut cmd = socketkit();
    cmd.args([
        "forward",
        "-l",
        "udp:127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
    ])
    .args(args);
    start_with_metrics(cmd)
}

pub(crate) fn echo_upstream() -> Running {
    let mut cmd = socketkit();
    cmd.args(["serve", "echo", "-l", "udp:127.0.0.1:0"]);
    Running::start(cmd, 1)
}

/// Sends `data` through the relay at `port` and returns the answer.
pub(crate) fn echo_through(client: &UdpSocket, port: u16, data: &[u8]) -> Vec<u8> {
    client.send_to(data, ("127.0.0.1", port)).expect("send");
    let mut buf = [0u8; 2048];
    let (n, _) = client
        .recv_from(&mut buf)
        .expect("an answer through the relay");
    buf[..n].to_vec()
}

#[test]
fn udp_forward_metrics_count_clients_and_bytes_per_listener() {
    let upstream = echo_upstream();
    let (relay, metrics) = metered_relay(&["--to", &upstream.endpoints()[0]]);
    let (a, b) = (client(), client());
    assert_eq!(echo_through(&a, relay.port(), b"hello"), b"hello");
    assert_eq!(echo_through(&a, relay.port(), b"again!"), b"again!");
    assert_eq!(echo_through(&b, relay.port(), b"abc"), b"abc");
    let listener = format!("listener=\"{}\"", relay.endpoints()[0]);
    let count = |name| sample(&metrics, name, &listener);
    assert_eq!(
        count("socketkit_connections_accepted_total"),
        2,
        "two clients"
    );
    assert_eq!(count("socketkit_connections_active"), 2);
    assert_eq!(count("socketkit_bytes_received_total"), 14);
    assert_eq!(count("socketkit_bytes_sent_total"), 14);
    assert_eq!(http_get(&metrics, "/health").0, 200);
}

/// A new client's datagram past `--max-connections` is dropped and counted by reason, as
/// the access rules' drops are (it was counted nowhere).
#[test]
fn udp_forward_counts_the_datagrams_max_connections_drops() {
    let upstream = echo_upstream();
    let (relay, metrics) =
        metered_relay(&["--to", &upstream.endpoints()[0], "--max-connections", "1"]);
    let (a, b) = (client(), client());
    assert_eq!(echo_through(&a, relay.port(), b"hello"), b"hello");
    for _ in 0..3 {
        b.send_to(b"dropped", ("127.0.0.1", relay.port()))
            .expect("send");
    }
    let labels = format!(
        "listener=\"{}\",reason=\"max_connections\"",
        relay.endpoints()[0]
    );
    crate::support::wait_until(
        Duration::from_secs(5),
        || format!("not counted:\n{}", http_get(&metrics, "/metrics").1),
        || sample(&metrics, "socketkit_datagrams_dropped_total", &labels) == 3,
    );
    let listener = format!("listener=\"{}\"", relay.endpoints()[0]);
    assert_eq!(
        sample(&metrics, "socketkit_bytes_received_total", &listener),
        5,
        "the relayed \"hello\" only: a dropped datagram is no bytes received"
    );
}

#[test]
fn udp_forward_metrics_count_each_targets_clients_and_failures() {
    let (live, _) = named_target("live", usize::MAX);
    // A port nothing listens on: the kernel answers each datagram with an ICMP refusal,
    // which the next send on the client's upstream socket reports.
    let dead = format!("udp:127.0.0.1:{}", crate::support::net::free_port());
    let (relay, metrics) = metered_relay(&["--to", &live, "--to", &dead]);
    let (a, b) = (client(), client());
    assert_eq!(who(&a, relay.port()), "live");
    // The second client goes to the dead target: two datagrams, the second refused.
    for _ in 0..2 {
        b.send_to(b"who", ("127.0.0.1", relay.port()))
            .expect("send");
        std::thread::sleep(Duration::from_millis(100));
    }
    let count = |name: &str, target: &str| sample(&metrics, name, &format!("target=\"{target}\""));
    assert_eq!(
        count("socketkit_forward_target_connections_total", &live),
        1
    );
    assert_eq!(
        count("socketkit_forward_target_connections_total", &dead),
        1
    );
    assert_eq!(count("socketkit_forward_target_active", &live), 1);
    assert_eq!(count("socketkit_forward_target_failures_total", &live), 0);
    crate::support::wait_until(
        Duration::from_secs(5),
        || "no failure counted for the dead target".to_owned(),
        || count("socketkit_forward_target_failures_total", &dead) >= 1,
    );
}

#[test]
fn udp_forward_closes_an_idle_client_in_its_metrics() {
    let upstream = echo_upstream();
    let (relay, metrics) =
        metered_relay(&["--to", &upstream.endpoints()[0], "--idle-timeout", "200ms"]);
    assert_eq!(echo_through(&client(), relay.port(), b"x"), b"x");
    let listener = format!("listener=\"{}\"", relay.endpoints()[0]);
    crate::support::wait_until(
        Duration::from_secs(10),
        || "the idle client stays active".into(),
        || sample(&metrics, "socketkit_connections_active", &listener) == 0,
    );
    let name = "socketkit_connection_duration_seconds_count";
    assert_eq!(sample(&metrics, name, &listener), 1);
}

/// `--shutdown-delay` as `serve`'s UDP listeners have it: after SIGTERM `/health` answers
/// 503 at once, the relay goes on for the delay, then the process exits 0.
#[test]
fn udp_forward_relays_through_the_shutdown_delay() {
    let upstream = echo_upstream();
    let (mut relay, metrics) =
        metered_relay(&["--to", &upstream.endpoints()[0], "--shutdown-delay", "2s"]);
    let a = client();
    assert_eq!(echo_through(&a, relay.port(), b"before"), b"before");
    let signalled = std::time::Instant::now();
    relay.signal(libc::SIGTERM);
    relay.wait_for_stderr(&["/health answers 503"], Duration::from_secs(10));
    assert_eq!(http_get(&metrics, "/health").0, 503);
    assert_eq!(echo_through(&a, relay.port(), b"during"), b"during");
    let status = relay.wait(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "{}", relay.stderr());
    assert!(
        signalled.elapsed() >= Duration::from_millis(1900),
        "stopped before the delay: {:?}",
        signalled.elapsed()
    );
}

#[test]
fn udp_forward_refuses_a_stream_listener_beside_a_udp_one() {
    for listeners in [
        ["udp:127.0.0.1:0", "127.0.0.1:0"],
        ["127.0.0.1:0", "udp:127.0.0.1:0"],
    ] {
        let mut cmd = socketkit();
        cmd.args(["forward", "-l", listeners[0], "-l", listeners[1]])
            .args(["--to", "udp:127.0.0.1:9"]);
        let out = run(cmd, Vec::new(), DEADLINE);
        assert_eq!(out.code(), 2, "{listeners:?}: {}", out.stderr);
        assert!(
            out.stderr
                .starts_with("error: forward relays streams to streams and datagrams"),
            "{}",
            out.stderr
        );
    }
}

/// SIGUSR2 asks a server to restart, SIGHUP to reload; the default action of each killed the
/// udp: relay, which has no listeners to hand over and, without `--to-file`, nothing to
/// reload. It says so and relays on.
#[test]
fn udp_forward_survives_sigusr2_and_sighup() {
    let upstream = echo_upstream();
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "udp:127.0.0.1:0", "--to"])
        .arg(&upstream.endpoints()[0]);
    let mut relay = Running::start(cmd, 1);
    let a = client();
    relay.signal(libc::SIGUSR2);
    relay.wait_for_stderr(&["SIGUSR2"], Duration::from_secs(10));
    assert_eq!(echo_through(&a, relay.port(), b"after"), b"after");
    relay.signal(libc::SIGHUP);
    relay.wait_for_stderr(
        &["SIGHUP: nothing to reload (no --to-file, no access rules)"],
        Duration::from_secs(10),
    );
    assert_eq!(echo_through(&a, relay.port(), b"again"), b"again");
    relay.signal(libc::SIGTERM);
    assert_eq!(relay.wait(Duration::from_secs(10)).code(), Some(0));
}

/// A target where nothing listens answers with ICMP port unreachable; the relay said
/// nothing of it even at `-vv`. At `-v` it says the target did not take the datagram, and
/// goes on.
#[test]
fn udp_forward_says_at_v_that_the_target_took_no_datagram() {
    let closed = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let target = format!("udp:{}", closed.local_addr().expect("addr"));
    drop(closed); // nothing listens there now
    let mut cmd = socketkit();
    cmd.args(["forward", "-v", "-l", "udp:127.0.0.1:0", "--to", &target]);
    let relay = Running::start(cmd, 1);
    let a = client();
    for _ in 0..3 {
        a.send_to(b"anyone?", ("127.0.0.1", relay.port()))
            .expect("send");
        std::thread::sleep(Duration::from_millis(50));
    }
    relay.wait_for_stderr(
        &["the target did not take a datagram"],
        Duration::from_secs(10),
    );
}

/// `--to-file` on a datagram relay: SIGHUP puts the file's new list in force for the
/// clients that come next; a client already relayed keeps its target, and a target that
/// left loses its metric series.
#[test]
fn udp_forward_reads_its_to_file_again_on_sighup() {
    let (a, _) = named_target("A", usize::MAX);
    let (b, _) = named_target("B", usize::MAX);
    let (c, _) = named_target("C", usize::MAX);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("targets");
    std::fs::write(&file, format!("{a}\n")).expect("write");
    let (relay, metrics) = metered_relay(&["--to-file", file.to_str().expect("UTF-8 path")]);
    let first = client();
    assert_eq!(who(&first, relay.port()), "A");

    std::fs::write(&file, format!("{b}\n{c}\n")).expect("rewrite");
    relay.signal(libc::SIGHUP);
    relay.wait_for_stderr(
        &[&format!(
            "targets reloaded from {}: {b}, {c} (added {b}, {c}; removed {a})",
            file.display()
        )],
        Duration::from_secs(10),
    );
    // In turn, the turn going on from where it was.
    let later: String = (0..4).map(|_| who(&client(), relay.port())).collect();
    assert!(later == "BCBC" || later == "CBCB", "{later}");
    assert_eq!(
        who(&first, relay.port()),
        "A",
        "a relayed client keeps its target"
    );
    let scrape = http_get(&metrics, "/metrics").1;
    assert!(!scrape.contains(&a), "{scrape}");
    let count = |target: &str| {
        sample(
            &metrics,
            "socketkit_forward_target_connections_total",
            &format!("target=\"{target}\""),
        )
    };
    assert_eq!((count(&b), count(&c)), (2, 2));

    // A stream target cannot join a datagram relay: the list stays.
    std::fs::write(&file, "127.0.0.1:9\n").expect("rewrite");
    relay.signal(libc::SIGHUP);
    relay.wait_for_stderr(
        &["targets not reloaded, the old ones stay: cannot forward datagrams to these targets"],
        Duration::from_secs(10),
    );
    let last = who(&client(), relay.port());
    assert!(last == "B" || last == "C", "{last}");
}
