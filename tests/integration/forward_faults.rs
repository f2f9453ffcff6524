//! `socketkit forward` out of file descriptors (under `ulimit -n 64`), TCP and UDP: the
//! relay backs off and logs once per burst (SPEC §1.2), as `serve` does, instead of
//! accepting and resetting each new client, or warning once per datagram.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::TestResult;
use crate::support::net::connect;
use crate::support::process::{Running, socketkit, socketkit_with_fd_limit};

/// `socketkit serve echo` on `listen`, with the usual descriptor limit.
fn echo(listen: &str) -> Running {
    let mut cmd = socketkit();
    cmd.args(["serve", "echo", "-l", listen]);
    Running::start(cmd, 1)
}

/// `socketkit forward -l listen --to to` under `ulimit -n limit`.
fn forward_short(limit: u32, listen: &str, to: &str, extra: &[&str]) -> Running {
    let mut cmd = socketkit_with_fd_limit(limit);
    cmd.args(["forward", "-l", listen, "--to", to]).args(extra);
    Running::start(cmd, 1)
}

/// What became of a client that sent `hi` through the relay.
#[derive(Debug, PartialEq)]
enum Fate {
    /// `hi` came back: relayed.
    Relayed,
    /// Reset or closed (how): accepted and dropped.
    Dropped(String),
    /// Nothing yet: waiting in the backlog.
    Waiting,
}

/// Reads what `stream` has within `limit`, without waiting longer.
fn fate(stream: &mut TcpStream, limit: Duration) -> Fate {
    stream
        .set_read_timeout(Some(limit))
        .expect("a read timeout");
    let mut back = [0u8; 2];
    match stream.read(&mut back) {
        Ok(2) if &back == b"hi" => Fate::Relayed,
        // One byte of two: the second is on its way.
        Ok(1) if back[0] == b'h' => Fate::Relayed,
        Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            Fate::Waiting
        }
        other => Fate::Dropped(format!("{other:?}")),
    }
}

/// Clients that stay open, one after another, past the descriptor limit: the ones the relay
/// has no room for wait in the backlog (only the one accepted as the target's socket could
/// not be made is reset), the log says so in a few lines, not three per client, and never
/// blames the target; once the first clients leave, the waiting ones are relayed.
#[test]
fn tcp_relay_out_of_descriptors_leaves_clients_in_the_backlog() -> TestResult {
    let target = echo("127.0.0.1:0");
    // Whether the last client to fit takes the last descriptor with its accept (and its
    // target's socket then fails), or accept fails first, depends on the parity of what the
    // relay holds of its own: both are tried.
    for limit in [63, 64] {
        clients_past_the_limit(limit, &target.endpoints()[0])?;
    }
    Ok(())
}

/// [`tcp_relay_out_of_descriptors_leaves_clients_in_the_backlog`] under `ulimit -n limit`,
/// relaying to `to`.
fn clients_past_the_limit(limit: u32, to: &str) -> TestResult {
    const CLIENTS: usize = 100;
    let relay = forward_short(limit, "127.0.0.1:0", to, &[]);
    let mut relayed = Vec::new();
    let mut waiting = Vec::new();
    let mut dropped = Vec::new();
    for _ in 0..CLIENTS {
        let mut client = connect(&relay.addr());
        if let Err(err) = client.write_all(b"hi") {
            // Accepted and reset before it could write.
            dropped.push(format!("{err:?}"));
            continue;
        }
        // Once one waits, the ones after it wait too: no need to wait a second for each.
        let limit = if waiting.is_empty() { 1000 } else { 20 };
        match fate(&mut client, Duration::from_millis(limit)) {
            Fate::Relayed => relayed.push(client),
            Fate::Waiting => waiting.push(client),
            Fate::Dropped(how) => dropped.push(how),
        }
    }
    let log = relay.stderr();
    assert!(
        relayed.len() >= 10 && !waiting.is_empty(),
        "{} relayed, {} waiting, {dropped:?} dropped (ulimit -n {limit}):\n{log}",
        relayed.len(),
        waiting.len()
    );
    assert!(
        dropped.len() <= 2,
        "{dropped:?}: clients accepted and dropped, {} waiting (ulimit -n {limit}):\n{log}",
        waiting.len()
    );
    assert!(
        !log.contains("cannot reach"),
        "the target is fine (ulimit -n {limit}):\n{log}"
    );
    let lines = log.lines().count();
    assert!(
        lines <= 6,
        "{lines} lines for one burst (ulimit -n {limit}):\n{log}"
    );
    // A client the relay had to drop is said at the default level, even after the accept
    // loop's own warning of the shortage.
    assert!(
        dropped.is_empty() || log.contains("out of resources to open a connection to"),
        "{dropped:?} dropped unsaid (ulimit -n {limit}):\n{log}"
    );
    // The first clients leave: each waiting one is relayed in turn, and leaves once relayed
    // (so that the next has room).
    drop(relayed);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut late_drops = Vec::new();
    while !waiting.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} clients still waiting:\n{}",
            waiting.len(),
            relay.stderr()
        );
        waiting.retain_mut(|client| match fate(client, Duration::from_millis(1)) {
            Fate::Waiting => true,
            Fate::Relayed => false,
            Fate::Dropped(how) => {
                late_drops.push(how);
                false
            }
        });
        thread::sleep(Duration::from_millis(10));
    }
    let log = relay.stderr();
    assert!(
        !log.contains("cannot reach"),
        "the target is fine (ulimit -n {limit}):\n{log}"
    );
    assert!(
        late_drops.len() <= 2,
        "{late_drops:?}: clients dropped (ulimit -n {limit}):\n{log}"
    );
    Ok(())
}

/// A flood of new source ports past the descriptor limit: one warning for the shortage,
/// naming the target as the endpoint it was given, not one per datagram; the client set up
/// before it is still relayed; and once upstream sockets idle out, new clients are relayed
/// again and the relay says how many datagrams it dropped meanwhile.
#[test]
fn udp_relay_out_of_descriptors_warns_once_per_shortage() -> TestResult {
    let target = echo("udp:127.0.0.1:0");
    let to = target.endpoints()[0].clone();
    let relay = forward_short(64, "udp:127.0.0.1:0", &to, &["--idle-timeout", "2s"]);
    let at = relay.endpoints()[0].trim_start_matches("udp:").to_owned();
    let first = UdpSocket::bind("127.0.0.1:0")?;
    first.set_read_timeout(Some(Duration::from_secs(2)))?;
    let round_trip = |socket: &UdpSocket, data: &[u8]| -> bool {
        let mut back = [0u8; 64];
        socket.send_to(data, &at).is_ok()
            && socket.recv(&mut back).is_ok_and(|len| &back[..len] == data)
    };
    assert!(round_trip(&first, b"first"), "{}", relay.stderr());
    // Far more sources than descriptors; each sends three datagrams and keeps its port
    // (so none is given back to a later source) until the flood is over.
    let mut flood = Vec::new();
    for _ in 0..150 {
        let source = UdpSocket::bind("127.0.0.1:0")?;
        for _ in 0..3 {
            source.send_to(b"x", &at)?;
        }
        flood.push(source);
        thread::sleep(Duration::from_millis(1));
    }
    thread::sleep(Duration::from_millis(300));
    assert!(round_trip(&first, b"still"), "{}", relay.stderr());
    drop(flood);
    let log = relay.stderr();
    let warnings = log.lines().filter(|line| line.contains("WARN")).count();
    assert_eq!(warnings, 1, "one warning for the shortage:\n{log}");
    assert!(
        log.contains(&format!("relay to {to}: too many open files")),
        "the warning names {to}:\n{log}"
    );
    // The flood's upstream sockets idle out (2 s): a new client is relayed again.
    let late = UdpSocket::bind("127.0.0.1:0")?;
    late.set_read_timeout(Some(Duration::from_millis(500)))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !round_trip(&late, b"late") {
        assert!(
            Instant::now() < deadline,
            "never relayed again:\n{}",
            relay.stderr()
        );
    }
    relay.assert_said("datagram(s) of new clients dropped meanwhile");
    Ok(())
}
