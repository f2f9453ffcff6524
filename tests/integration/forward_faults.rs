//! `socketkit forward` out of file descriptors (under `ulimit -n 64`): the relay logs once
//! per burst (SPEC §1.2), not once per datagram.

use std::net::UdpSocket;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::TestResult;
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
