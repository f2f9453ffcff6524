//! The UDP services that answer every datagram (echo, chargen, daytime, qotd, time,
//! greeting) do not answer where an answer starts a loop that never ends: a datagram from a
//! port below 1024, where another host's echo or chargen answers from (the echo–chargen
//! "fraggle" loop, CVE-1999-0103), and one whose spoofed source is the listener itself. A
//! single spoofed datagram ran echo against chargen at 25 MB/s until one was killed (an
//! outside audit). Both need root to send (a port below 1024, a raw socket): skipped, with
//! the reason printed, without it.

use std::net::UdpSocket;
use std::time::Duration;

use crate::support::TestResult;
use crate::support::net::IO_TIMEOUT;
use crate::support::process::{Running, socketkit};

/// `socketkit serve SERVICE -vv -l udp:127.0.0.1:0`, running.
fn serve(service: &str) -> Running {
    let mut cmd = socketkit();
    cmd.args(["serve", service, "-vv", "-l", "udp:127.0.0.1:0"]);
    Running::start(cmd, 1)
}

/// A UDP socket on 127.0.0.1 at a free port below 1024; `None` where this user may not.
fn privileged_socket() -> Option<UdpSocket> {
    (900..1000).find_map(|port| UdpSocket::bind(("127.0.0.1", port)).ok())
}

/// Whether `socket` gets any datagram within half a second.
fn answered(socket: &UdpSocket) -> std::io::Result<bool> {
    socket.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut buf = [0u8; 1024];
    Ok(socket.recv_from(&mut buf).is_ok())
}

#[test]
fn a_datagram_from_a_port_below_1024_is_not_answered() -> TestResult {
    let Some(privileged) = privileged_socket() else {
        eprintln!("skipped: binding a port below 1024 needs root");
        return Ok(());
    };
    for service in ["echo", "chargen", "daytime", "time"] {
        let server = serve(service);
        let to = format!("127.0.0.1:{}", server.port());
        privileged.send_to(b"x", &to)?;
        assert!(
            !answered(&privileged)?,
            "{service} answered a port below 1024"
        );
        server.wait_for_stderr(
            &["not answered: a datagram from a port below 1024"],
            IO_TIMEOUT,
        );
        // A client's ephemeral port is answered.
        let client = UdpSocket::bind("127.0.0.1:0")?;
        client.send_to(b"x", &to)?;
        assert!(answered(&client)?, "{service} did not answer a client");
    }
    Ok(())
}

/// A UDP datagram from 127.0.0.1:`from` to 127.0.0.1:`to`, its source port spoofed through
/// a raw socket (the kernel writes the IP header; a zero checksum is none, for IPv4).
/// `Ok(false)` where this user may not open one.
fn send_spoofed(from: u16, to: u16, payload: &[u8]) -> std::io::Result<bool> {
    use socket2::{Domain, Protocol, Socket, Type};
    let raw = match Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP)) {
        Ok(raw) => raw,
        Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => return Ok(false),
        Err(err) => return Err(err),
    };
    let length = u16::try_from(8 + payload.len()).unwrap_or(u16::MAX);
    let mut datagram = Vec::with_capacity(usize::from(length));
    for field in [from, to, length, 0] {
        datagram.extend_from_slice(&field.to_be_bytes());
    }
    datagram.extend_from_slice(payload);
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], to));
    raw.send_to(&datagram, &target.into())?;
    Ok(true)
}

#[test]
fn a_datagram_whose_source_is_the_listener_itself_is_not_answered() -> TestResult {
    let server = serve("echo");
    let port = server.port();
    if !send_spoofed(port, port, b"loop")? {
        eprintln!("skipped: a raw socket needs root (CAP_NET_RAW)");
        return Ok(());
    }
    server.wait_for_stderr(
        &["not answered: a datagram from this listener's own address"],
        IO_TIMEOUT,
    );
    // One datagram, and no answer: not a loop of them.
    std::thread::sleep(Duration::from_millis(300));
    let seen = server.stderr().matches("DEBUG datagram peer=").count();
    assert_eq!(seen, 1, "{}", server.stderr());
    Ok(())
}

/// The same for a UDP relay: a forged datagram from its own address was relayed, and the
/// target's answer to "the client" sent to the relay itself, which relayed it again, about
/// 100,000 times a second until it was stopped (an outside audit).
#[test]
fn a_relay_drops_a_datagram_whose_source_is_its_own_address() -> TestResult {
    let target = serve("echo");
    let mut cmd = socketkit();
    cmd.args(["forward", "-vv", "-l", "udp:127.0.0.1:0", "--to"])
        .arg(&target.endpoints()[0]);
    let relay = Running::start(cmd, 1);
    let port = relay.port();
    if !send_spoofed(port, port, b"loop")? {
        eprintln!("skipped: a raw socket needs root (CAP_NET_RAW)");
        return Ok(());
    }
    relay.wait_for_stderr(
        &["a datagram from the relay's own address dropped"],
        IO_TIMEOUT,
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !target.stderr().contains("DEBUG datagram peer="),
        "the target got it: {}",
        target.stderr()
    );
    Ok(())
}
