//! `forward -l udp:… --to udp:…` against a Python UDP server that answers each datagram with
//! the sender's port, so the test sees which upstream socket carried it: one per client, a
//! fresh one after the idle timeout. Clients are Rust sockets and socat.

use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::net::IO_TIMEOUT;
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
    assert!(relay.stderr().contains("idle"), "{}", relay.stderr());
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

#[test]
fn udp_forwarding_refuses_what_it_cannot_do() {
    for (args, words) in [
        (
            &["forward", "-l", "udp:127.0.0.1:0", "--to", "127.0.0.1:80"][..],
            "udp: target",
        ),
        (
            &[
                "forward",
                "-l",
                "udp:127.0.0.1:0",
                "--to",
                "udp:127.0.0.1:53",
                "--allow",
                "127.0.0.1",
            ],
            "--allow",
        ),
        (
            &["forward", "-l", "127.0.0.1:0", "--to", "udp:127.0.0.1:53"],
            "only TCP and Unix stream targets",
        ),
    ] {
        let mut cmd = socketkit();
        cmd.args(args);
        let out = run(cmd, Vec::new(), DEADLINE);
        assert_eq!(out.code(), 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(words), "{args:?}: {}", out.stderr);
    }
}
