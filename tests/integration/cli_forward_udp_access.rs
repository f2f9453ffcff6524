//! `forward -l udp:` with SPEC §3.2's options, which "apply to every command that accepts
//! connections": datagrams from a source the rules refuse are dropped and counted, a
//! client (a source address, which the relay gives an upstream socket of its own) counts
//! as a connection for the per-source limits, the rule files are read again on SIGHUP, and
//! `--user` is taken once the listeners are bound. The relay refused all of these before
//! (exit 2). Relays to `socketkit serve echo`: no external tool.

use std::net::UdpSocket;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use crate::access_control::as_root;
use crate::balancer::sample;
use crate::cli_forward_udp::{echo_through, echo_upstream, metered_relay};
use crate::support::net::IO_TIMEOUT;
use crate::support::process::{DEADLINE, Running, socketkit};
use crate::support::wait_until;

/// A client socket on `source` (any 127.0.0.0/8 address is this machine's).
fn client_on(source: &str) -> UdpSocket {
    let socket = UdpSocket::bind((source, 0)).expect("bind");
    socket.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    socket
}

/// Sends `data` to the relay and expects no answer within 300 ms (the relay dropped it).
fn unanswered(client: &UdpSocket, port: u16, data: &[u8]) {
    client.send_to(data, ("127.0.0.1", port)).expect("send");
    client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    let answer = client.recv_from(&mut buf);
    client.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    assert!(
        answer.is_err(),
        "an answer to a datagram the relay should have dropped: {answer:?}"
    );
}

/// Waits until the relay has counted `count` datagrams dropped for `reason`.
fn dropped(metrics: &str, relay: &Running, reason: &str, count: u64) {
    let labels = format!("listener=\"{}\",reason=\"{reason}\"", relay.endpoints()[0]);
    wait_until(
        Duration::from_secs(5),
        || format!("not {count} dropped for {reason}"),
        || sample(metrics, "socketkit_datagrams_dropped_total", &labels) == count,
    );
}

#[test]
fn udp_forward_drops_and_counts_the_datagrams_of_denied_sources() {
    let upstream = echo_upstream();
    let (relay, metrics) =
        metered_relay(&["--to", &upstream.endpoints()[0], "--deny", "127.0.0.2"]);
    let (allowed, denied) = (client_on("127.0.0.1"), client_on("127.0.0.2"));
    assert_eq!(echo_through(&allowed, relay.port(), b"in"), b"in");
    for _ in 0..3 {
        unanswered(&denied, relay.port(), b"out");
    }
    dropped(&metrics, &relay, "acl", 3);
    assert_eq!(
        echo_through(&allowed, relay.port(), b"still in"),
        b"still in"
    );
    // Counted as dropped, and not as bytes from clients too (as `serve` counts them).
    let listener = format!("listener=\"{}\"", relay.endpoints()[0]);
    assert_eq!(
        sample(&metrics, "socketkit_bytes_received_total", &listener),
        10,
        "the relayed \"in\" and \"still in\" only"
    );
}

/// The rules are asked of every datagram, so a reload applies to a client already relayed.
#[test]
fn udp_forward_reads_its_rule_files_again_on_sighup() {
    let dir = tempfile::tempdir().expect("temp dir");
    let allow = dir.path().join("allow.txt");
    std::fs::write(&allow, "127.0.0.0/8\n").expect("write");
    let upstream = echo_upstream();
    let allow_file = allow.to_string_lossy().into_owned();
    let (relay, metrics) = metered_relay(&[
        "--to",
        &upstream.endpoints()[0],
        "--allow-file",
        &allow_file,
    ]);
    let client = client_on("127.0.0.1");
    assert_eq!(echo_through(&client, relay.port(), b"before"), b"before");
    std::fs::write(&allow, "10.0.0.0/8\n").expect("write");
    relay.signal(libc::SIGHUP);
    relay.wait_for_stderr(&["rules reloaded: 1 allow, 0 deny"], DEADLINE);
    unanswered(&client, relay.port(), b"after");
    dropped(&metrics, &relay, "acl", 1);
}

/// A client holds its place in its source's count while its upstream socket lives: a second
/// client from the same address is dropped until the first idles out; another source is not.
#[test]
fn udp_forward_holds_a_clients_place_in_its_sources_count_until_it_idles_out() {
    let upstream = echo_upstream();
    let (relay, metrics) = metered_relay(&[
        "--to",
        &upstream.endpoints()[0],
        "--max-per-source",
        "1",
        "--idle-timeout",
        "500ms",
    ]);
    let (first, second) = (client_on("127.0.0.1"), client_on("127.0.0.1"));
    assert_eq!(echo_through(&first, relay.port(), b"one"), b"one");
    unanswered(&second, relay.port(), b"two");
    dropped(&metrics, &relay, "max_per_source", 1);
    let elsewhere = client_on("127.0.0.3");
    assert_eq!(echo_through(&elsewhere, relay.port(), b"three"), b"three");
    // Once the first client's upstream socket has idled out, its place is free.
    let labels = format!("listener=\"{}\"", relay.endpoints()[0]);
    wait_until(
        Duration::from_secs(5),
        || "the first clients did not idle out".to_owned(),
        || sample(&metrics, "socketkit_connections_active", &labels) == 0,
    );
    assert_eq!(echo_through(&second, relay.port(), b"four"), b"four");
}

#[test]
fn udp_forward_drops_new_clients_past_their_sources_rate() {
    let upstream = echo_upstream();
    let (relay, metrics) = metered_relay(&[
        "--to",
        &upstream.endpoints()[0],
        "--rate-per-source",
        "1/1h",
    ]);
    let (first, second) = (client_on("127.0.0.1"), client_on("127.0.0.1"));
    assert_eq!(echo_through(&first, relay.port(), b"one"), b"one");
    unanswered(&second, relay.port(), b"two");
    dropped(&metrics, &relay, "rate", 1);
    // The rate counts new clients, not the datagrams of one already relayed.
    for _ in 0..5 {
        assert_eq!(echo_through(&first, relay.port(), b"more"), b"more");
    }
}

/// `--user nobody`: the relay runs as nobody once bound, relays, and its Unix socket file is
/// nobody's (so it may remove it at exit, which it does).
#[test]
fn udp_forward_becomes_its_user_once_bound() {
    if !as_root() {
        return;
    }
    // A directory nobody may write, or the file could not be removed by it.
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let socket = dir.path().join("relay.sock");
    let upstream = echo_upstream();
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "udp:127.0.0.1:0", "-l"])
        .arg(format!("unixgram:{}", socket.display()))
        .args(["--to", &upstream.endpoints()[0], "--user", "nobody"]);
    let mut relay = Running::start(cmd, 2);
    let status = std::fs::read_to_string(format!("/proc/{}/status", relay.pid())).expect("status");
    let uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .expect("a Uid line");
    assert!(
        uid.split_whitespace().all(|id| id == "65534"),
        "still root: Uid:{uid}"
    );
    let client = client_on("127.0.0.1");
    assert_eq!(
        echo_through(&client, relay.port(), b"as nobody"),
        b"as nobody"
    );
    assert_eq!(
        std::fs::metadata(&socket).expect("socket file").uid(),
        65534,
        "the socket file stays root's"
    );
    relay.signal(libc::SIGTERM);
    assert!(relay.wait(DEADLINE).success(), "{}", relay.stderr());
    assert!(!socket.exists(), "the socket file was left behind");
}

/// `--pid-file`: written before the readiness line, removed at exit.
#[test]
fn udp_forward_writes_its_pid_file_and_removes_it_at_exit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pid_file = dir.path().join("relay.pid");
    let upstream = echo_upstream();
    let mut cmd = socketkit();
    cmd.args([
        "forward",
        "-l",
        "udp:127.0.0.1:0",
        "--to",
        &upstream.endpoints()[0],
    ])
    .arg("--pid-file")
    .arg(&pid_file);
    let mut relay = Running::start(cmd, 1);
    let written = std::fs::read_to_string(&pid_file).expect("the pid file");
    assert_eq!(written.trim(), relay.pid().to_string());
    relay.signal(libc::SIGTERM);
    assert!(relay.wait(DEADLINE).success(), "{}", relay.stderr());
    assert!(!pid_file.exists(), "the pid file was left behind");
}
