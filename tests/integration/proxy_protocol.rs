//! The PROXY protocol through the real binary (SPEC §3.3): headers from other people's
//! writers (curl, HAProxy) accepted, ours (`forward --send-proxy`) accepted by HAProxy, and
//! every bad case refused, counted, and kept from the service.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::balancer::{sample, start_with_metrics};
use crate::support::TestResult;
use crate::support::haproxy::HaProxy;
use crate::support::net::{connect_from, free_port, try_connect_from};
use crate::support::process::{DEADLINE, Running, run, socketkit};
use crate::support::tools::available;

/// `serve exec` behind a PROXY-speaking client: answers `PEER_ADDR PEER_PORT` after reading
/// an HTTP request head (so that nothing is left unread when it closes), as HTTP/1.0.
fn http_peer_echo(trusted: &str) -> Running {
    let mut cmd = socketkit();
    cmd.args(["serve", "exec", "-l", "127.0.0.1:0", "-v"])
        .args([
            "--proxy-protocol",
            "--trusted-proxy",
            trusted,
            "--shell",
            "--",
        ])
        .arg(concat!(
            r#"while read -r line && [ "$line" != "$(printf '\r')" ]; do :; done; "#,
            r#"printf 'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n%s %s\n' "#,
            r#""$SOCKETKIT_PEER_ADDR" "$SOCKETKIT_PEER_PORT""#
        ));
    Running::start(cmd, 1)
}

#[test]
fn curl_haproxy_protocol_names_the_client_to_exec() -> TestResult {
    if !available("curl") {
        return Ok(());
    }
    let server = http_peer_echo("127.0.0.0/8");
    let output = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "--haproxy-protocol",
            "--interface",
            "127.0.0.3",
        ])
        .arg(format!("http://{}/", server.addr()))
        .output()?;
    let body = String::from_utf8(output.stdout)?;
    assert!(
        output.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let words: Vec<&str> = body.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"127.0.0.3"), "{body:?}");
    let port: u16 = words.get(1).and_then(|p| p.parse().ok()).expect("a port");
    assert!(port > 0);
    // The -v log's closing line names the same client.
    server.wait_for_stderr(&[&format!("closed peer=127.0.0.3:{port}")], DEADLINE);
    Ok(())
}

#[test]
fn forward_send_proxy_v1_and_v2_are_read_by_haproxy_which_writes_headers_we_read() -> TestResult {
    // client (127.0.0.2) → forward --send-proxy vN → HAProxy accept-proxy → the other
    // version of header → serve exec --proxy-protocol: the client's address survives both
    // hops only if each side parses the other's header.
    let server = http_peer_echo("127.0.0.1");
    let (v2_in, v1_in) = (free_port(), free_port());
    let config = format!(
        "defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n\
         listen v2_in\n  bind 127.0.0.1:{v2_in} accept-proxy\n  server s {0} send-proxy\n\
         listen v1_in\n  bind 127.0.0.1:{v1_in} accept-proxy\n  server s {0} send-proxy-v2\n",
        server.addr()
    );
    let Some(_haproxy) = HaProxy::start(&config, &[v2_in, v1_in]) else {
        return Ok(());
    };
    for (version, port) in [("v2", v2_in), ("v1", v1_in)] {
        let mut cmd = socketkit();
        cmd.args(["forward", "-l", "127.0.0.1:0", "--send-proxy", version])
            .arg("--to")
            .arg(format!("127.0.0.1:{port}"));
        let relay = Running::start(cmd, 1);
        let mut client = connect_from("127.0.0.2", relay.addr().parse()?);
        let own = client.local_addr()?;
        client.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")?;
        let mut answer = String::new();
        client.read_to_string(&mut answer)?;
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        assert_eq!(
            body,
            format!("127.0.0.2 {}\n", own.port()),
            "{version}: {answer:?}"
        );
    }
    Ok(())
}

#[test]
fn a_chain_of_relays_passes_the_first_client_on() -> TestResult {
    // client (127.0.0.2) → forward --send-proxy v2 → forward --proxy-protocol
    // --send-proxy v1 → serve exec --proxy-protocol: the last hop names the first client.
    let server = http_peer_echo("127.0.0.1");
    let relay = |args: &[&str], to: &str| {
        let mut cmd = socketkit();
        cmd.args(["forward", "-l", "127.0.0.1:0", "--to", to])
            .args(args);
        Running::start(cmd, 1)
    };
    let inner = relay(
        &[
            "--proxy-protocol",
            "--trusted-proxy",
            "127.0.0.1",
            "--send-proxy",
            "v1",
        ],
        &server.addr(),
    );
    let outer = relay(&["--send-proxy", "v2"], &inner.addr());
    let mut client = connect_from("127.0.0.2", outer.addr().parse()?);
    let own = client.local_addr()?;
    client.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut answer = String::new();
    client.read_to_string(&mut answer)?;
    assert!(
        answer.ends_with(&format!("\r\n\r\n127.0.0.2 {}\n", own.port())),
        "{answer:?}"
    );
    Ok(())
}

/// A relay behind a proxy passes on the address the client connected to at that proxy,
/// as HAProxy does, in the family the header gave: not its own listener's (which, for an
/// IPv6 client, went out IPv4-mapped).
#[test]
fn a_relay_passes_on_the_destination_its_proxy_named() -> TestResult {
    let next = std::net::TcpListener::bind("127.0.0.1:0")?;
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "127.0.0.1:0", "--to"])
        .arg(next.local_addr()?.to_string())
        .args(["--proxy-protocol", "--trusted-proxy", "127.0.0.1"])
        .args(["--send-proxy", "v1"]);
    let relay = Running::start(cmd, 1);
    let cases = [
        "PROXY TCP6 2001:db8::1 2001:db8::2 40000 443\r\n",
        "PROXY TCP4 192.0.2.1 198.51.100.2 40000 8443\r\n",
    ];
    for header in cases {
        let mut client = std::net::TcpStream::connect(relay.addr())?;
        client.write_all(header.as_bytes())?;
        next.set_nonblocking(false)?;
        let (mut hop, _) = next.accept()?;
        hop.set_read_timeout(Some(DEADLINE))?;
        let mut got = Vec::new();
        let mut byte = [0];
        while !got.ends_with(b"\r\n") && hop.read(&mut byte)? == 1 {
            got.push(byte[0]);
        }
        assert_eq!(String::from_utf8_lossy(&got), header);
    }
    Ok(())
}

#[test]
fn bad_headers_are_refused_counted_and_never_reach_the_service() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("service.log");
    let mut cmd = socketkit();
    cmd.args(["serve", "exec", "-l", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
        .args(["--proxy-protocol", "--trusted-proxy", "127.0.0.2"])
        .args(["--proxy-header-timeout", "500ms", "--shell", "--"])
        .arg(format!(
            r#"printf '%s:%s ' "$SOCKETKIT_PEER_ADDR" "$SOCKETKIT_PEER_PORT" >> {0}; cat >> {0}; echo >> {0}"#,
            log.display()
        ));
    let (server, metrics) = start_with_metrics(cmd);
    let addr: std::net::SocketAddr = server.addr().parse()?;
    let header = b"PROXY TCP4 192.0.2.9 192.0.2.1 5000 80\r\n";

    // An untrusted source, though its header is valid.
    assert_refused("127.0.0.3", addr, &[header, b"untrusted"]);
    // A trusted source without a header.
    assert_refused("127.0.0.2", addr, &[b"GET / HTTP/1.1\r\n\r\n"]);
    // Garbage after a v2 signature.
    assert_refused("127.0.0.2", addr, &[b"\r\n\r\n\0\r\nQUIT\n\x99garbage"]);
    // A v2 header that claims 60,000 bytes of addresses.
    let mut huge = b"\r\n\r\n\0\r\nQUIT\n\x21\x11".to_vec();
    huge.extend_from_slice(&60_000u16.to_be_bytes());
    huge.extend_from_slice(&[0; 512]);
    assert_refused("127.0.0.2", addr, &[&huge]);
    // Half a header, then silence: closed at the deadline, not before.
    assert_closed_at_deadline("127.0.0.2", addr, &header[..20]);

    // A good header, one byte per write: admitted, and the service gets exactly the bytes
    // after it, with the header's client as its peer.
    let mut split = connect_from("127.0.0.2", addr);
    for byte in header.iter().chain(b"payload") {
        split.write_all(&[*byte])?;
        thread::sleep(Duration::from_millis(1));
    }
    split.shutdown(std::net::Shutdown::Write)?;
    let _ = split.read_to_end(&mut Vec::new());
    // A v2 header and the service's bytes in one write: the header is taken, not the rest.
    let mut whole = connect_from("127.0.0.2", addr);
    let v2 = socketkit::proxy_protocol::encode_v2(
        "198.51.100.7:6000".parse()?,
        "198.51.100.1:443".parse()?,
    );
    whole.write_all(&[v2.as_slice(), b"second"].concat())?;
    whole.shutdown(std::net::Shutdown::Write)?;
    let _ = whole.read_to_end(&mut Vec::new());

    let listener = format!("listener=\"tcp:{addr}\"");
    let refused = format!("{listener},reason=\"proxy\"");
    assert_eq!(
        sample(&metrics, "socketkit_connections_refused_total", &refused),
        5
    );
    assert_eq!(
        sample(&metrics, "socketkit_connections_accepted_total", &listener),
        7
    );
    let received = sample(&metrics, "socketkit_bytes_received_total", &listener);
    // The admitted clients' headers only: the program reads their payloads off the socket
    // itself, where socketkit counts nothing, and a refused client received no byte of the
    // service (the late one's 20 bytes of a header were counted on the epoll engine, and
    // not on io_uring).
    assert_eq!(received, (header.len() + v2.len()) as u64);
    assert_eq!(
        service_log(&log, 2),
        ["192.0.2.9:5000 payload", "198.51.100.7:6000 second"]
    );
    Ok(())
}

/// Connects from `source`, sends `pieces` and checks the server closes without a byte of
/// the service (a refusal is a reset, which may come before the connect has returned).
pub(crate) fn assert_refused(source: &str, addr: std::net::SocketAddr, pieces: &[&[u8]]) {
    let mut stream = match try_connect_from(source, addr) {
        Ok(stream) => stream,
        Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => return,
        Err(err) => panic!("connect {source} -> {addr}: {err}"),
    };
    for piece in pieces {
        if stream.write_all(piece).is_err() {
            break; // reset already: refused
        }
    }
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    assert!(got.is_empty(), "a refused client got {got:?}");
}

/// Connects from `source`, sends `bytes` (part of a header, or nothing) and checks that the
/// server closes at a 500 ms header deadline, not before, without a byte of the service.
pub(crate) fn assert_closed_at_deadline(source: &str, addr: std::net::SocketAddr, bytes: &[u8]) {
    let mut late = connect_from(source, addr);
    late.write_all(bytes).expect("send");
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = late.read_to_end(&mut rest);
    let waited = started.elapsed();
    assert!(rest.is_empty(), "{rest:?}");
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
}

/// The exec service's log once it holds `lines` whole lines (or the deadline passed),
/// sorted.
fn service_log(path: &Path, lines: usize) -> Vec<String> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.matches('\n').count() >= lines || Instant::now() > deadline {
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            lines.sort();
            return lines;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn proxy_options_are_checked_before_anything_is_bound() {
    for (args, words) in [
        (&["--proxy-protocol"][..], "--trusted-proxy"),
        (&["--trusted-proxy", "10.0.0.0/8"][..], "--proxy-protocol"),
        (
            &["--proxy-protocol", "--trusted-proxy", "10.0.0.0/33"][..],
            "invalid network '10.0.0.0/33' for --trusted-proxy: prefix length must be 0-32",
        ),
        (
            &[
                "--proxy-protocol",
                "--trusted-proxy",
                "::1",
                "--proxy-header-timeout",
                "soon",
            ][..],
            "invalid duration 'soon' for --proxy-header-timeout",
        ),
        (
            &["--metrics", "udp:127.0.0.1:0"][..],
            "--metrics takes HOST:PORT",
        ),
    ] {
        let mut cmd = socketkit();
        cmd.args(["serve", "-l", "127.0.0.1:0"]).args(args);
        let out = run(cmd, Vec::new(), DEADLINE);
        assert_eq!(out.code(), 2, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.starts_with("error: ") && out.stderr.contains(words),
            "{args:?}: {}",
            out.stderr
        );
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    }
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "127.0.0.1:0", "--to", "127.0.0.1:9"])
        .args(["--send-proxy", "v3"]);
    let out = run(cmd, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 2, "{}", out.stderr);
}

/// Connects a client that sends `bytes` while the server's one connection slot is held by
/// another client, so that the server accepts it only once the bytes have all arrived;
/// then frees the slot (the holder sends a v1 header for 192.0.2.8:4001 and takes its
/// greeting) and returns the client, to be accepted next.
fn arrived_before_accept(addr: std::net::SocketAddr, bytes: &[u8]) -> std::net::TcpStream {
    let mut holder = connect_from("127.0.0.1", addr);
    // A first byte gets it accepted (a PROXY listener defers accepts until bytes come).
    holder.write_all(b"P").expect("send");
    thread::sleep(Duration::from_millis(100)); // accepted, waiting for the rest of its header
    let mut client = connect_from("127.0.0.1", addr);
    client.write_all(bytes).expect("send");
    thread::sleep(Duration::from_millis(50));
    holder
        .write_all(b"ROXY TCP4 192.0.2.8 192.0.2.1 4001 80\r\n")
        .expect("send");
    let mut greeting = Vec::new();
    holder
        .read_to_end(&mut greeting)
        .expect("the holder's greeting");
    assert_eq!(greeting, "你好".as_bytes());
    client
}

#[test]
fn a_header_there_at_accept_is_answered_on_the_spot_and_a_split_one_in_a_task() -> TestResult {
    let mut cmd = socketkit();
    cmd.args([
        "serve",
        "-v",
        "-l",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
    ])
    .args(["--proxy-protocol", "--trusted-proxy", "127.0.0.1"])
    .args(["--max-connections", "1", "--workers", "2"]);
    let (server, metrics) = start_with_metrics(cmd);
    let addr: std::net::SocketAddr = server.addr().parse()?;
    let v2 =
        socketkit::proxy_protocol::encode_v2("192.0.2.7:4000".parse()?, "192.0.2.1:80".parse()?);
    // The header is all there when the server accepts: answered by the accept loop.
    let mut at_once = arrived_before_accept(addr, &v2);
    let mut greeting = Vec::new();
    at_once
        .read_to_end(&mut greeting)
        .unwrap_or_else(|err| panic!("{err}:\n{}", server.stderr()));
    assert_eq!(greeting, "你好".as_bytes());
    // One byte at a time: the header is incomplete at accept, so a task reads it.
    let v1 = b"PROXY TCP4 192.0.2.9 192.0.2.1 5000 80\r\n";
    let mut split = connect_from("127.0.0.1", addr);
    for byte in v1 {
        split.write_all(&[*byte])?;
        thread::sleep(Duration::from_millis(1));
    }
    let mut greeting = Vec::new();
    split.read_to_end(&mut greeting)?;
    assert_eq!(greeting, "你好".as_bytes());
    // Garbage there at accept: refused on the accept loop, counted as before.
    let mut garbage = arrived_before_accept(addr, b"GET / HTTP/1.1\r\n\r\n");
    let mut got = Vec::new();
    let _ = garbage.read_to_end(&mut got);
    assert!(got.is_empty(), "{got:?}");

    server.wait_for_stderr(
        &[
            "answered at once peer=192.0.2.7:4000",
            "closed peer=192.0.2.9:5000",
            "closed peer=192.0.2.8:4001",
        ],
        DEADLINE,
    );
    let listener = format!("listener=\"tcp:{addr}\"");
    assert_eq!(
        sample(&metrics, "socketkit_connections_accepted_total", &listener),
        5
    );
    assert_eq!(
        sample(
            &metrics,
            "socketkit_connections_refused_total",
            &format!("{listener},reason=\"proxy\"")
        ),
        1
    );
    // Every header's bytes were received, whichever path took them off.
    let holder_header = 40;
    assert_eq!(
        sample(&metrics, "socketkit_bytes_received_total", &listener),
        (v2.len() + v1.len() + 2 * holder_header) as u64
    );
    assert_eq!(
        sample(&metrics, "socketkit_bytes_sent_total", &listener),
        4 * "你好".len() as u64
    );
    assert_eq!(
        sample(
            &metrics,
            "socketkit_connection_duration_seconds_count",
            &listener
        ),
        4
    );
    Ok(())
}

/// At `-v` a connection leaves one line: a refused one its `refused` line and no `closed`
/// line after it, on either engine (the epoll engine's in-task stages once logged both).
#[test]
fn a_refused_connection_leaves_one_line_at_v() -> TestResult {
    for engine in ["epoll", "io_uring"] {
        if engine == "io_uring" && !crate::io_engine::io_uring_available() {
            continue;
        }
        let mut cmd = socketkit();
        cmd.args(["serve", "echo", "-v", "--io-engine", engine])
            .args(["-l", "127.0.0.1:0", "--proxy-protocol"])
            .args(["--trusted-proxy", "127.0.0.0/8"]);
        let server = Running::start(cmd, 1);
        let addr: std::net::SocketAddr = server.addr().parse()?;
        // Garbage, and a header cut short, each from its own port.
        for bytes in [&b"garbage\r\n"[..], b"PROX"] {
            let mut client = connect_from("127.0.0.1", addr);
            let port = client.local_addr()?.port();
            let _ = client.write_all(bytes);
            let _ = client.shutdown(std::net::Shutdown::Write);
            let _ = client.read_to_end(&mut Vec::new());
            let peer = format!("peer=127.0.0.1:{port} ");
            server.wait_for_stderr(&["refused: ", &peer], Duration::from_secs(5));
            // An admitted connection after it closes with its own line: by then any line
            // of the refused one has been written.
            let header = format!("PROXY TCP4 192.0.2.9 192.0.2.1 {port} 80\r\nx");
            let mut admitted = connect_from("127.0.0.1", addr);
            admitted.write_all(header.as_bytes())?;
            admitted.shutdown(std::net::Shutdown::Write)?;
            let mut echoed = Vec::new();
            admitted.read_to_end(&mut echoed)?;
            assert_eq!(echoed, b"x");
            let closed = format!("closed peer=192.0.2.9:{port} ");
            server.wait_for_stderr(&[&closed], Duration::from_secs(5));
            let log = server.stderr();
            let lines: Vec<&str> = log.lines().filter(|l| l.contains(&peer)).collect();
            assert_eq!(lines.len(), 1, "{engine}: {lines:#?}");
        }
    }
    Ok(())
}

/// A dual-stack balancer (HAProxy's `bind :::PORT v4v6`) names its IPv4 clients in their
/// IPv4-mapped IPv6 form: the logs show the IPv4 address, as for a client of a dual-stack
/// listener, on the accept loop (a greeting) and in a connection's task (echo), v1 and v2.
#[test]
fn a_mapped_ipv4_source_in_a_header_is_logged_as_ipv4() -> TestResult {
    for (service, said) in [("greeting", "answered at once"), ("echo", "closed")] {
        let mut cmd = socketkit();
        cmd.args(["serve", service, "-v", "-l", "127.0.0.1:0"])
            .args(["--proxy-protocol", "--trusted-proxy", "127.0.0.1"]);
        let server = Running::start(cmd, 1);
        let addr: std::net::SocketAddr = server.addr().parse()?;
        let v2 = socketkit::proxy_protocol::encode_v2(
            "[::ffff:192.0.2.7]:4000".parse()?,
            "[::1]:80".parse()?,
        );
        let v1 = b"PROXY TCP6 ::ffff:192.0.2.9 ::1 5000 80\r\n".to_vec();
        for header in [v2, v1] {
            // Sent in one write: there at accept (deferred until bytes come) for the most part.
            let mut client = connect_from("127.0.0.1", addr);
            client.write_all(&[&header[..], b"hi"].concat())?;
            // The greeting answers at once and closes with "hi" unread, a reset that may
            // come before this shutdown (ENOTCONN then): the log is what is tested.
            let _ = client.shutdown(std::net::Shutdown::Write);
            let _ = client.read_to_end(&mut Vec::new());
        }
        server.wait_for_stderr(
            &[
                &format!("{said} peer=192.0.2.7:4000 "),
                &format!("{said} peer=192.0.2.9:5000 "),
            ],
            DEADLINE,
        );
    }
    Ok(())
}

/// A balancer's health check (HAProxy's `send-proxy-v2 check`) sends a v2 `LOCAL` header
/// and resets at once: its `closed` line names the balancer, the proxy's own address, on
/// the ring too, whose multishot accept gives no address and which asked the socket only
/// after the reset (it read `(unnamed)`).
#[test]
fn a_local_header_and_a_reset_are_logged_with_the_proxys_address() -> TestResult {
    const LOCAL_V2: [u8; 16] = *b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
    let mut cmd = socketkit();
    cmd.args(["serve", "echo", "-v", "-l", "127.0.0.1:0"])
        .args(["--proxy-protocol", "--trusted-proxy", "127.0.0.1"]);
    let server = Running::start(cmd, 1);
    let addr: std::net::SocketAddr = server.addr().parse()?;
    let mut ports = Vec::new();
    for _ in 0..5 {
        let mut check = connect_from("127.0.0.1", addr);
        check.write_all(&LOCAL_V2)?;
        ports.push(check.local_addr()?.port());
        socket2::SockRef::from(&check).set_linger(Some(Duration::ZERO))?;
        drop(check);
    }
    let said: Vec<String> = ports
        .iter()
        .map(|port| format!("closed peer=127.0.0.1:{port} "))
        .collect();
    let said: Vec<&str> = said.iter().map(String::as_str).collect();
    server.wait_for_stderr(&said, DEADLINE);
    assert!(
        !server.stderr().contains("(unnamed)"),
        "{}",
        server.stderr()
    );
    Ok(())
}
