//! `socketkit listen -v`'s connection lines (SPEC §3.5): as `serve`'s and `forward`'s,
//! with `peer`, `local` and `listener`, and a `closed` line with `bytes_in`, `bytes_out`
//! and `duration_ms` — keys of the object with `--log-format json`, `key=value` in text —
//! with and without `-k`, and the first peer of a datagram `listen`. Found by an outside
//! audit of SPEC §3.

use std::io::Write;
use std::net::Shutdown;

use serde_json::Value;

use crate::support::net::{IO_TIMEOUT, connect, read_to_end};
use crate::support::process::{DEADLINE, Running, socketkit};
use crate::support::wait_until;

fn listen(args: &[&str]) -> Running {
    let mut cmd = socketkit();
    cmd.arg("listen").args(args);
    Running::start(cmd, 1)
}

/// The JSON objects of `log` (every line but the plain readiness ones: `listening on`,
/// `metrics on`, a self-signed certificate's fingerprint).
fn objects(log: &str) -> Vec<Value> {
    log.lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect()
}

/// The one object of `objects` for `peer` whose `msg` is `msg`.
fn line_of<'a>(objects: &'a [Value], peer: &str, msg: &str) -> &'a Value {
    let found: Vec<&Value> = objects
        .iter()
        .filter(|o| o["peer"] == peer && o["msg"] == msg)
        .collect();
    assert_eq!(found.len(), 1, "one {msg:?} line for {peer}: {objects:?}");
    found[0]
}

/// Checks the `connection from` and `closed` lines of the connection from `peer` to
/// `addr`, which moved `bytes_in` and `bytes_out`.
fn assert_logged(objects: &[Value], addr: &str, peer: &str, (bytes_in, bytes_out): (u64, u64)) {
    let opened = line_of(objects, peer, &format!("connection from {peer}"));
    let closed = line_of(objects, peer, "closed");
    for line in [opened, closed] {
        assert_eq!(line["level"], "debug", "{line}");
        assert_eq!(line["local"], addr, "{line}");
        assert_eq!(line["listener"], format!("tcp:{addr}"), "{line}");
    }
    assert!(opened.get("bytes_in").is_none(), "{opened}");
    assert_eq!(closed["bytes_in"], bytes_in, "{closed}");
    assert_eq!(closed["bytes_out"], bytes_out, "{closed}");
    assert!(closed["duration_ms"].is_u64(), "{closed}");
}

/// Without `-k`: one connection, bytes both ways, then exit 0.
#[test]
fn json_listen_v_logs_the_connection_and_its_closing_with_the_servers_fields() {
    let mut cmd = socketkit();
    cmd.args(["listen", "127.0.0.1:0", "-v", "--log-format", "json"]);
    let mut listener = Running::start_with_stdin(cmd, 1, b"hello client".to_vec());
    let addr = listener.addr();
    let peer = crate::cli_listen::exchange_and_exit(&mut listener);
    assert_logged(&objects(&listener.stderr()), &addr, &peer, (14, 12));
}

/// With `-k`: each connection in turn gets its two lines (the audit's case).
#[test]
fn json_listen_keep_open_v_logs_every_connection_with_the_servers_fields() {
    let mut listener = listen(&["127.0.0.1:0", "-k", "-v", "--log-format", "json"]);
    let addr = listener.addr();
    let mut peers = Vec::new();
    for (i, text) in ["first\n", "second one\n"].into_iter().enumerate() {
        let mut client = connect(&addr);
        peers.push((client.local_addr().expect("addr").to_string(), text.len()));
        client.write_all(text.as_bytes()).expect("write");
        drop(client); // its end: the listener logs it closed and takes the next
        wait_until(
            IO_TIMEOUT,
            || listener.stderr(),
            || listener.stderr().matches("\"msg\":\"closed\"").count() > i,
        );
    }
    listener.signal(libc::SIGTERM);
    let _ = listener.wait(DEADLINE);
    let objects = objects(&listener.stderr());
    for (peer, sent) in peers {
        let sent = u64::try_from(sent).expect("small");
        assert_logged(&objects, &addr, &peer, (sent, 0));
    }
}

/// In text, the same fields as `key=value` after the message, which stays
/// `connection from PEER`.
#[test]
fn text_listen_v_names_the_fields_after_the_message() {
    let mut cmd = socketkit();
    cmd.args(["listen", "127.0.0.1:0", "-v"]);
    let mut listener = Running::start_with_stdin(cmd, 1, b"abc".to_vec());
    let addr = listener.addr();
    let mut client = connect(&addr);
    let peer = client.local_addr().expect("addr").to_string();
    client.write_all(b"12345").expect("write");
    client.shutdown(Shutdown::Write).expect("half-close");
    assert_eq!(read_to_end(&mut client), b"abc");
    assert_eq!(listener.wait(DEADLINE).code(), Some(0));
    let log = listener.stderr();
    let fields = format!("peer={peer} local={addr} listener=\"tcp:{addr}\"");
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("connection from {peer} {fields}"))),
        "{log}"
    );
    assert!(
        log.lines().any(|l| l.contains(&format!(
            "closed {fields} bytes_in=5 bytes_out=3 duration_ms="
        ))),
        "{log}"
    );
}

/// A datagram `listen` names its one peer with the same `peer`, `local` and `listener`
/// fields (it has no closing line: the exchange has no end the socket could see).
#[test]
fn json_listen_v_on_udp_names_the_first_peer_with_the_servers_fields() {
    let mut listener = listen(&["udp:127.0.0.1:0", "-v", "--log-format", "json"]);
    let addr = format!("127.0.0.1:{}", listener.port());
    let client = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    client.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    client.send_to(b"ping\n", &addr).expect("send");
    let peer = client.local_addr().expect("addr").to_string();
    wait_until(
        IO_TIMEOUT,
        || listener.stderr(),
        || listener.stderr().contains("datagram from"),
    );
    listener.signal(libc::SIGTERM);
    let _ = listener.wait(DEADLINE);
    let objects = objects(&listener.stderr());
    let line = line_of(&objects, &peer, &format!("datagram from {peer}"));
    assert_eq!(line["local"], addr, "{line}");
    assert_eq!(line["listener"], format!("udp:{addr}"), "{line}");
}

/// A refused client of a dual-stack listener is logged as a server logs its refusals:
/// `refused: WORDS` with `peer` as IPv4 (it was `[::ffff:127.0.0.2]:…`), `local`,
/// `listener` and `reason`. Found by an outside audit.
#[test]
fn a_refused_client_is_logged_with_the_servers_fields() {
    let listener = listen(&[
        ":0",
        "-k",
        "-v",
        "--log-format",
        "json",
        "--deny",
        "127.0.0.2",
    ]);
    let port = listener.port();
    let to = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let refused = crate::support::net::try_connect_from("127.0.0.2", to);
    let peer = refused.as_ref().map_or_else(
        |_| String::new(),
        |s| s.local_addr().expect("addr").to_string(),
    );
    wait_until(
        IO_TIMEOUT,
        || listener.stderr(),
        || listener.stderr().contains("refused: "),
    );
    let objects = objects(&listener.stderr());
    let line = objects
        .iter()
        .find(|o| o["msg"] == "refused: the source is not allowed")
        .unwrap_or_else(|| panic!("no refused line: {objects:?}"));
    if !peer.is_empty() {
        assert_eq!(line["peer"], peer.as_str(), "{line}");
    }
    assert!(
        line["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.2:")),
        "{line}"
    );
    assert_eq!(line["local"], format!("127.0.0.1:{port}"), "{line}");
    assert_eq!(line["listener"], format!("tcp:[::]:{port}"), "{line}");
    assert_eq!(line["reason"], "acl", "{line}");
}

/// `listen tls: -k`: a client that does not speak TLS is refused as `serve` refuses it —
/// counted in `refused_total{reason="tls"}`, not among the served connections' durations,
/// and logged `refused: TLS handshake failed: …` with no `closed` line. Found by an
/// outside audit.
#[test]
fn a_failed_tls_handshake_is_a_refusal() {
    let mut cmd = socketkit();
    cmd.args(["listen", "tls:127.0.0.1:0", "-k", "--tls-self-signed", "-v"])
        .args(["--log-format", "json", "--metrics", "127.0.0.1:0"]);
    let (listener, metrics) = crate::balancer::start_with_metrics(cmd);
    let addr = listener.addr();
    let addr = addr.trim_start_matches("tls:");
    let mut garbage = connect(addr);
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let _ = read_to_end(&mut garbage);
    wait_until(
        IO_TIMEOUT,
        || listener.stderr(),
        || listener.stderr().contains("refused: TLS handshake failed"),
    );
    let labels = format!("listener=\"tls:{addr}\"");
    let refused = crate::balancer::sample(
        &metrics,
        "socketkit_connections_refused_total",
        &format!("{labels},reason=\"tls\""),
    );
    assert_eq!(refused, 1);
    let served = crate::balancer::sample(
        &metrics,
        "socketkit_connection_duration_seconds_count",
        &labels,
    );
    assert_eq!(served, 0);
    let objects = objects(&listener.stderr());
    let line = objects
        .iter()
        .find(|o| {
            o["msg"]
                .as_str()
                .is_some_and(|m| m.starts_with("refused: TLS"))
        })
        .expect("the refused line");
    assert_eq!(line["reason"], "tls", "{line}");
    assert_eq!(line["listener"], format!("tls:{addr}"), "{line}");
    assert!(!objects.iter().any(|o| o["msg"] == "closed"), "{objects:?}");
}
