//! A server's TCP connections have Nagle's algorithm off (inherited from the listener), so
//! that a reply written in pieces is not held for the client's delayed ACK: `serve echo`
//! of a message longer than one read came back 44 ms late on loopback (both engines,
//! `--proxy-protocol` and `--inetd` too), where TLS, exec, listen and forward were prompt.
//! Found by an outside audit of latency and buffering.
//!
//! The bound is a median of 30 rounds at 20 ms: a round takes well under a millisecond
//! here, and 44 ms with Nagle on, so neither a slow machine nor one late round fails it.

use std::time::Duration;

use crate::support::net::{connect, echo_round_trip_median};
use crate::support::process::{Running, socketkit};

/// Longer than one of the echo's 16 KiB reads: its echo is written in two pieces.
const MESSAGE: usize = 20_000;
const ROUNDS: usize = 30;
const BOUND: Duration = Duration::from_millis(20);

fn assert_prompt(addr: &str, what: &str) {
    let mut stream = connect(addr);
    let median = echo_round_trip_median(&mut stream, MESSAGE, ROUNDS);
    drop(stream);
    assert!(
        median < BOUND,
        "{what}: an echo of {MESSAGE} bytes took {median:?} (median of {ROUNDS}); Nagle's \
         algorithm held its second piece for the delayed ACK"
    );
}

#[test]
fn serve_echo_answers_a_long_message_at_once() {
    for engine in ["epoll", "io_uring"] {
        let mut cmd = socketkit();
        cmd.args(["serve", "echo", "-l", "127.0.0.1:0", "--io-engine", engine]);
        let server = Running::start(cmd, 1);
        assert_prompt(&server.addr(), &format!("serve echo --io-engine {engine}"));
    }
}

#[test]
fn serve_echo_behind_a_proxy_header_answers_at_once() {
    let mut cmd = socketkit();
    cmd.args(["serve", "echo", "-l", "127.0.0.1:0", "--proxy-protocol"])
        .args(["--trusted-proxy", "127.0.0.1"]);
    let server = Running::start(cmd, 1);
    let mut stream = connect(&server.addr());
    std::io::Write::write_all(&mut stream, b"PROXY TCP4 192.0.2.9 192.0.2.1 5000 80\r\n")
        .expect("header");
    let median = echo_round_trip_median(&mut stream, MESSAGE, ROUNDS);
    assert!(median < BOUND, "serve echo --proxy-protocol: {median:?}");
}

/// The relay set Nagle off on each accepted connection itself; it has the listener's now.
/// Its target here answers each message in two writes 2 ms apart, with Nagle off, so that
/// the relay has two pieces to pass on and only its own sockets can hold one back.
#[test]
fn forward_relays_a_long_echo_at_once() {
    let target = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = target.local_addr().expect("address").to_string();
    let echo = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut conn, _) = target.accept().expect("the relay connects");
        conn.set_nodelay(true).expect("TCP_NODELAY");
        conn.set_read_timeout(Some(crate::support::net::IO_TIMEOUT))
            .expect("timeout");
        let mut message = vec![0u8; MESSAGE];
        while conn.read_exact(&mut message).is_ok() {
            let (first, rest) = message.split_at(MESSAGE / 2);
            let sent = conn.write_all(first).and_then(|()| {
                std::thread::sleep(Duration::from_millis(2));
                conn.write_all(rest)
            });
            if sent.is_err() {
                break;
            }
        }
    });
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "127.0.0.1:0", "--to", &addr]);
    let relay = Running::start(cmd, 1);
    assert_prompt(&relay.addr(), "forward to an echo");
    drop(relay);
    echo.join().expect("the echo thread ends with the relay");
}
