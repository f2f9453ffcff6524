//! The datagram relay (`forward -l udp:`) stopped (^Z, a debugger, a paused VM) past one of
//! its limits: what its peers sent during the stop is relayed, not dropped. Found by an
//! outside audit of the decisions made from timers, with `SIGSTOP` and `SIGCONT`: past
//! `--idle-timeout` the client's upstream socket was closed with the target's answer
//! unread (and its next datagram went out from a new port); past `--shutdown-delay` the
//! datagrams of the delay were never relayed. The test is the target, so it sees which
//! upstream socket carries each datagram.

use std::net::{SocketAddr, UdpSocket};
use std::thread;
use std::time::Duration;

use crate::support::TestResult;
use crate::support::net::IO_TIMEOUT;
use crate::support::process::{Running, socketkit};

/// A UDP socket on loopback that gives up a receive after [`IO_TIMEOUT`].
fn socket() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a loopback UDP socket");
    socket.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    socket
}

/// `forward -l udp:127.0.0.1:0 --to` the test's `target`, with `extra`.
fn relay_to(target: &UdpSocket, extra: &[&str]) -> Result<Running, Box<dyn std::error::Error>> {
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "udp:127.0.0.1:0", "--to"])
        .arg(format!("udp:{}", target.local_addr()?))
        .args(extra);
    Ok(Running::start(cmd, 1))
}

/// The next datagram `socket` receives, as text, and where it came from.
fn receive(socket: &UdpSocket) -> std::io::Result<(String, SocketAddr)> {
    let mut buf = [0u8; 512];
    let (n, from) = socket.recv_from(&mut buf)?;
    Ok((String::from_utf8_lossy(&buf[..n]).into_owned(), from))
}

/// Sends `signal` to `pid`, a child of this test.
fn signal(pid: i32, signal: i32) {
    // SAFETY: kill(2) of a child of this test with a signal number; no memory involved.
    unsafe { libc::kill(pid, signal) };
}

#[test]
fn a_relay_stopped_past_its_idle_limit_keeps_the_client_that_talked_meanwhile() -> TestResult {
    let target = socket();
    let relay = relay_to(&target, &["--idle-timeout", "1s"])?;
    let client = socket();
    client.send_to(b"one", ("127.0.0.1", relay.port()))?;
    let (first, upstream) = receive(&target)?;
    assert_eq!(first, "one");
    signal(relay.pid(), libc::SIGSTOP);
    // During the stop, the target answers and the client sends again: the pair is not idle.
    target.send_to(b"answer", upstream)?;
    client.send_to(b"two", ("127.0.0.1", relay.port()))?;
    thread::sleep(Duration::from_millis(2500));
    signal(relay.pid(), libc::SIGCONT);
    let answered = receive(&client).map(|(text, _)| text);
    let second = receive(&target);
    let log = relay.stderr();
    assert_eq!(
        answered.map_err(|e| e.to_string()),
        Ok("answer".to_owned()),
        "the target's answer from the stop reaches the client\n{log}"
    );
    let (second, from) = second.map_err(|err| format!("{err}\n{log}"))?;
    assert_eq!(second, "two", "{log}");
    assert_eq!(
        from, upstream,
        "the client's datagram from the stop leaves from its upstream socket, not a new one\n{log}"
    );
    Ok(())
}

#[test]
fn datagrams_sent_while_the_relay_was_stopped_in_its_shutdown_delay_are_relayed() -> TestResult {
    let target = socket();
    let mut relay = relay_to(&target, &["--shutdown-delay", "1s"])?;
    let client = socket();
    signal(relay.pid(), libc::SIGTERM);
    relay.wait_for_stderr(&["relaying for"], IO_TIMEOUT);
    signal(relay.pid(), libc::SIGSTOP);
    for i in 0..5 {
        client.send_to(
            format!("datagram {i}").as_bytes(),
            ("127.0.0.1", relay.port()),
        )?;
    }
    thread::sleep(Duration::from_millis(1500));
    signal(relay.pid(), libc::SIGCONT);
    let mut relayed = Vec::new();
    while relayed.len() < 5 {
        match receive(&target) {
            Ok((text, _)) => relayed.push(text),
            Err(_) => break,
        }
    }
    relay.wait(IO_TIMEOUT);
    let expected: Vec<String> = (0..5).map(|i| format!("datagram {i}")).collect();
    assert_eq!(relayed, expected, "{}", relay.stderr());
    Ok(())
}
