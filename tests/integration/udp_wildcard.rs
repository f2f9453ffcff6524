//! UDP listeners bound to a wildcard address (`udp::PORT`, `udp:0.0.0.0:PORT`,
//! `udp:[::]:PORT`) answer each client from the address it sent to: a client whose socket
//! is connected to 127.0.0.2 (as `nc -u` and `socketkit connect udp:` connect theirs) takes
//! only datagrams from 127.0.0.2, and an answer from the host's primary address would be
//! dropped without a word (an outside audit found `serve` and `forward` doing that).

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use crate::support::TestResult;
use crate::support::net::IO_TIMEOUT;
use crate::support::process::{Running, run, socketkit};

/// `socketkit serve echo -l LISTEN`, running.
fn echo(listen: &str) -> Running {
    let mut cmd = socketkit();
    cmd.args(["serve", "echo", "-l", listen]);
    Running::start(cmd, 1)
}

/// Sends `data` from a socket bound to `from` and connected to `to`, and returns the
/// answer, which such a socket takes only from `to` itself.
fn ask_connected(from: &str, to: SocketAddr, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let socket = UdpSocket::bind(from)?;
    socket.connect(to)?;
    socket.set_read_timeout(Some(IO_TIMEOUT))?;
    socket.send(data)?;
    let mut buf = [0u8; 1024];
    let n = socket.recv(&mut buf)?;
    Ok(buf[..n].to_vec())
}

/// The address and port of `running`'s first listener, at `host` instead of its own.
fn at(host: &str, running: &Running) -> Result<SocketAddr, std::net::AddrParseError> {
    Ok(SocketAddr::new(host.parse()?, running.port()))
}

/// Clients connected to each of 127.0.0.2, .3 and .1 at `running`'s port each get their
/// echo (which a connected socket takes only from the address it is connected to).
fn each_answered_from_where_it_asked(running: &Running, listen: &str) -> TestResult {
    for host in ["127.0.0.2", "127.0.0.3", "127.0.0.1"] {
        let answer = ask_connected("127.0.0.1:0", at(host, running)?, host.as_bytes())
            .map_err(|err| format!("{listen}, a client connected to {host}: {err}"))?;
        assert_eq!(answer, host.as_bytes(), "{listen}, asked at {host}");
    }
    Ok(())
}

/// On a dual-stack `[::]` listener: an IPv6 client on ::1, and an IPv4 one (IPv4-mapped)
/// answered from the IPv4 address it sent to.
fn ipv6_and_ipv4_clients_answered(running: &Running) -> TestResult {
    let answer = ask_connected("[::1]:0", at("::1", running)?, b"six")
        .map_err(|err| format!("a client connected to ::1: {err}"))?;
    assert_eq!(answer, b"six");
    let answer = ask_connected("127.0.0.1:0", at("127.0.0.2", running)?, b"four")
        .map_err(|err| format!("a client connected to 127.0.0.2: {err}"))?;
    assert_eq!(answer, b"four");
    Ok(())
}

#[test]
fn serve_on_any_ipv4_address_answers_from_the_address_asked() -> TestResult {
    for listen in ["udp::0", "udp:0.0.0.0:0"] {
        each_answered_from_where_it_asked(&echo(listen), listen)?;
    }
    Ok(())
}

#[test]
fn serve_on_the_ipv6_any_address_answers_ipv6_and_ipv4_clients_from_where_they_sent() -> TestResult
{
    ipv6_and_ipv4_clients_answered(&echo("udp:[::]:0"))
}

#[test]
fn socketkit_connect_to_a_second_address_gets_its_echo() -> TestResult {
    let server = echo("udp::0");
    let mut cmd = socketkit();
    cmd.arg("connect")
        .arg(format!("udp:127.0.0.2:{}", server.port()))
        .args(["--wait", "500ms"]);
    let out = run(cmd, b"hi\n".to_vec(), Duration::from_secs(15));
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout, b"hi\n", "the echo, from 127.0.0.2");
    Ok(())
}

#[test]
fn forward_on_any_address_answers_each_client_from_the_address_it_sent_to() -> TestResult {
    let target = echo("udp:127.0.0.1:0");
    for listen in ["udp::0", "udp:0.0.0.0:0"] {
        let mut cmd = socketkit();
        cmd.args(["forward", "-l", listen, "--to"])
            .arg(&target.endpoints()[0]);
        each_answered_from_where_it_asked(&Running::start(cmd, 1), listen)?;
    }
    Ok(())
}

#[test]
fn forward_on_the_ipv6_any_address_answers_ipv6_clients() -> TestResult {
    let target = echo("udp:127.0.0.1:0");
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "udp:[::]:0", "--to"])
        .arg(&target.endpoints()[0]);
    ipv6_and_ipv4_clients_answered(&Running::start(cmd, 1))
}

/// An IPv4 client of a dual-stack UDP listener is logged as IPv4 (`peer=127.0.0.1:…`), as a
/// TCP one is: serve's `datagram` line and forward's `new client` line named it
/// `[::ffff:127.0.0.1]:…`, which a grep for the client's address misses.
#[test]
fn an_ipv4_client_of_a_dual_stack_udp_listener_is_logged_as_ipv4() -> TestResult {
    let mut cmd = socketkit();
    cmd.args(["serve", "echo", "-v", "-l", "udp::0"]);
    let server = Running::start(cmd, 1);
    let mut cmd = socketkit();
    cmd.args(["forward", "-vv", "-l", "udp::0", "--to"])
        .arg(format!("udp:127.0.0.1:{}", server.port()));
    let relay = Running::start(cmd, 1);
    let answer = ask_connected("127.0.0.1:0", at("127.0.0.1", &relay)?, b"four")?;
    assert_eq!(answer, b"four");
    server.wait_for_stderr(&["datagram peer=127.0.0.1:"], IO_TIMEOUT);
    relay.wait_for_stderr(&["new client, relayed to", "client=127.0.0.1:"], IO_TIMEOUT);
    for (what, running) in [("serve", &server), ("forward", &relay)] {
        assert!(
            !running.stderr().contains("::ffff:"),
            "{what}: {}",
            running.stderr()
        );
    }
    Ok(())
}
