//! The io_uring engine admits connections itself when every stage decides on what the
//! accept gives: a PROXY header (received on the worker, the service's bytes after it kept
//! for the service) and rules on the client's address. Each case is checked on a server
//! whose io_uring workers are running, so that it is the ring, not epoll, that decided.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::thread;
use std::time::Duration;

use crate::balancer::{sample, start_with_metrics};
use crate::io_engine::{io_uring_available, threads, uring_workers};
use crate::proxy_protocol::{assert_closed_at_deadline, assert_refused};
use crate::support::TestResult;
use crate::support::haproxy::HaProxy;
use crate::support::net::{connect_from, free_port};
use crate::support::process::{Running, socketkit};

/// `serve SERVICE` on the io_uring engine behind PROXY from 127.0.0.2, with metrics, `-v`
/// and `extra`; checks its workers run.
fn proxied(service: &str, extra: &[&str]) -> (Running, String) {
    let mut cmd = socketkit();
    cmd.args(["serve", service, "-v", "--io-engine", "io_uring"])
        .args(["-l", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
        .args(["--proxy-protocol", "--trusted-proxy", "127.0.0.2"])
        .args(extra);
    let (server, metrics) = start_with_metrics(cmd);
    assert!(uring_workers(&server) >= 1, "{:?}", threads(server.pid()));
    (server, metrics)
}

/// Sends `pieces` from 127.0.0.2 (1 ms apart), then ends its side; returns the answer.
fn exchange(addr: std::net::SocketAddr, pieces: &[&[u8]]) -> Vec<u8> {
    let mut client = connect_from("127.0.0.2", addr);
    for piece in pieces {
        client.write_all(piece).expect("send");
        thread::sleep(Duration::from_millis(1));
    }
    client.shutdown(Shutdown::Write).expect("shutdown");
    let mut got = Vec::new();
    client.read_to_end(&mut got).expect("the answer");
    got
}

#[test]
fn io_uring_echo_takes_the_header_and_echoes_every_byte_after_it() -> TestResult {
    if !io_uring_available() {
        return Ok(());
    }
    let (server, metrics) = proxied("echo", &["--proxy-header-timeout", "500ms"]);
    let addr: std::net::SocketAddr = server.addr().parse()?;
    let v2 = socketkit::proxy_protocol::encode_v2(
        "198.51.100.7:6000".parse()?,
        "198.51.100.1:443".parse()?,
    );
    // The header and the service's first bytes in one write, then more.
    let first = [v2.as_slice(), b"hello "].concat();
    assert_eq!(exchange(addr, &[&first, b"world"]), b"hello world");
    // A v1 header one byte per write: waited for, then the bytes after it.
    let v1 = b"PROXY TCP4 192.0.2.9 192.0.2.1 5000 80\r\n";
    let mut pieces: Vec<&[u8]> = v1.chunks(1).collect();
    pieces.push(b"split");
    assert_eq!(exchange(addr, &pieces), b"split");
    // Refused: untrusted, garbage, a header that never ends, a client that says nothing.
    assert_refused("127.0.0.3", addr, &[v1, b"untrusted"]);
    assert_refused("127.0.0.2", addr, &[b"GET / HTTP/1.1\r\n\r\n"]);
    assert_closed_at_deadline("127.0.0.2", addr, &v1[..20]);
    assert_closed_at_deadline("127.0.0.2", addr, b"");
    server.wait_for_stderr(
        &[
            "closed peer=198.51.100.7:6000",
            "closed peer=192.0.2.9:5000",
            "refused: not a trusted proxy peer=127.0.0.3:",
            "refused: no PROXY protocol header peer=127.0.0.2:",
            "refused: no decision within 500ms peer=127.0.0.2:",
        ],
        Duration::from_secs(5),
    );
    let listener = format!("listener=\"tcp:{addr}\"");
    let refused = format!("{listener},reason=\"proxy\"");
    assert_eq!(
        sample(&metrics, "socketkit_connections_refused_total", &refused),
        4
    );
    // Header bytes are received bytes; a refused client's too, as far as they were taken.
    let received = sample(&metrics, "socketkit_bytes_received_total", &listener);
    let admitted = v2.len() + 11 + v1.len() + 5;
    assert!(
        received >= admitted as u64,
        "{received} bytes received, {admitted} admitted"
    );
    assert_eq!(
        sample(&metrics, "socketkit_bytes_sent_total", &listener),
        11 + 5
    );
    Ok(())
}

#[test]
fn io_uring_greeting_answers_behind_proxy_and_under_access_rules() -> TestResult {
    if !io_uring_available() {
        return Ok(());
    }
    let (server, metrics) = proxied("greeting", &["--deny", "192.0.2.66"]);
    let addr: std::net::SocketAddr = server.addr().parse()?;
    let header = |source: &str| {
        socketkit::proxy_protocol::encode_v2(
            source.parse().expect("an address"),
            "192.0.2.1:80".parse().expect("an address"),
        )
    };
    assert_eq!(
        exchange(addr, &[&header("192.0.2.7:4000")]),
        "你好".as_bytes()
    );
    // Bytes after the header are not the greeting's business, and do not cost the reply.
    let with_more = [header("192.0.2.8:4001").as_slice(), b"ignored"].concat();
    assert_eq!(exchange(addr, &[&with_more]), "你好".as_bytes());
    // The header's client is the one the access rules judge.
    assert_refused("127.0.0.2", addr, &[&header("192.0.2.66:4002")]);
    server.wait_for_stderr(
        &[
            "answered at once peer=192.0.2.7:4000",
            "answered at once peer=192.0.2.8:4001",
            "refused: ",
        ],
        Duration::from_secs(5),
    );
    let listener = format!("listener=\"tcp:{addr}\"");
    assert_eq!(
        sample(
            &metrics,
            "socketkit_connections_refused_total",
            &format!("{listener},reason=\"acl\"")
        ),
        1
    );
    // The two answered clients' headers, and the bytes one sent with its header.
    let header_len = header("192.0.2.7:4000").len();
    assert_eq!(
        sample(&metrics, "socketkit_bytes_received_total", &listener),
        (2 * header_len + b"ignored".len()) as u64
    );

    // Access rules alone, without PROXY, are the ring's too.
    let mut cmd = socketkit();
    cmd.args(["serve", "--io-engine", "io_uring", "-l", "127.0.0.1:0"])
        .args(["--allow", "127.0.0.2"]);
    let ruled = Running::start(cmd, 1);
    assert!(uring_workers(&ruled) >= 1, "{:?}", threads(ruled.pid()));
    let addr: std::net::SocketAddr = ruled.addr().parse()?;
    assert_eq!(exchange(addr, &[]), "你好".as_bytes());
    assert_refused("127.0.0.3", addr, &[]);
    Ok(())
}

#[test]
fn io_uring_echo_behind_a_real_haproxy_names_each_client() -> TestResult {
    if !io_uring_available() {
        return Ok(());
    }
    let mut cmd = socketkit();
    cmd.args(["serve", "echo", "-v", "--io-engine", "io_uring"])
        .args(["-l", "127.0.0.1:0"])
        .args(["--proxy-protocol", "--trusted-proxy", "127.0.0.1"]);
    let server = Running::start(cmd, 1);
    assert!(uring_workers(&server) >= 1, "{:?}", threads(server.pid()));
    let (v2_front, v1_front) = (free_port(), free_port());
    let config = format!(
        "defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n\
         listen v2\n  bind 127.0.0.1:{v2_front}\n  server s {0} send-proxy-v2\n\
         listen v1\n  bind 127.0.0.1:{v1_front}\n  server s {0} send-proxy\n",
        server.addr()
    );
    let Some(_haproxy) = HaProxy::start(&config, &[v2_front, v1_front]) else {
        return Ok(());
    };
    for (front, source) in [(v2_front, "127.0.0.2"), (v1_front, "127.0.0.3")] {
        let mut client = connect_from(source, format!("127.0.0.1:{front}").parse()?);
        let own = client.local_addr()?;
        client.write_all(b"through haproxy")?;
        client.shutdown(Shutdown::Write)?;
        let mut echoed = Vec::new();
        client.read_to_end(&mut echoed)?;
        assert_eq!(echoed, b"through haproxy");
        server.wait_for_stderr(&[&format!("closed peer={own}")], Duration::from_secs(5));
    }
    Ok(())
}
