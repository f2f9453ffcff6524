//! The low-level layer over real sockets: every family and type, timeouts, shutdown, errors.

use std::io::ErrorKind;
use std::net::Shutdown;
use std::thread;
use std::time::{Duration, Instant};

use socketkit::socket::{
    Address, Family, Socket, Type, create_connection, create_server, getaddrinfo, gethostname,
    socketpair,
};

use crate::support::TestResult;

fn listener(family: Family, host: &str) -> Result<Socket, socketkit::Error> {
    let s = Socket::new(family, Type::Stream)?;
    s.bind((host, 0))?;
    s.listen(5)?;
    Ok(s)
}

fn round_trip_stream(server: Socket) -> TestResult {
    let addr = server.local_addr()?;
    let client = thread::spawn(move || -> Result<Vec<u8>, socketkit::Error> {
        let s = Socket::new(addr.family(), Type::Stream)?;
        s.connect(&addr)?;
        s.sendall(b"ping")?;
        s.shutdown(Shutdown::Write)?;
        let mut got = Vec::new();
        loop {
            let chunk = s.recv(1024)?;
            if chunk.is_empty() {
                return Ok(got);
            }
            got.extend(chunk);
        }
    });
    let (conn, peer) = server.accept()?;
    assert_eq!(conn.peer_addr()?, peer);
    assert_eq!(conn.recv(1024)?, b"ping");
    assert!(
        conn.recv(1024)?.is_empty(),
        "the client's half-close reads as end of stream"
    );
    conn.sendall(b"pong")?;
    conn.close();
    assert_eq!(client.join().expect("client thread")?, b"pong");
    Ok(())
}

#[test]
fn tcp_over_ipv4() -> TestResult {
    round_trip_stream(listener(Family::Inet, "127.0.0.1")?)
}

#[test]
fn tcp_over_ipv6() -> TestResult {
    let server = listener(Family::Inet6, "::1")?;
    assert_eq!(server.local_addr()?.family(), Family::Inet6);
    assert!(server.local_addr()?.to_string().starts_with("[::1]:"));
    round_trip_stream(server)
}

#[test]
fn unix_stream() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("s.sock");
    let server = Socket::new(Family::Unix, Type::Stream)?;
    server.bind(path.to_str().ok_or("utf-8 path")?)?;
    server.listen(5)?;
    assert_eq!(server.local_addr()?, Address::unix(&path));
    assert_eq!(server.local_addr()?.to_string(), path.display().to_string());
    round_trip_stream(server)
}

#[test]
fn udp_sendto_recvfrom_both_families() -> TestResult {
    for (family, host) in [(Family::Inet, "127.0.0.1"), (Family::Inet6, "::1")] {
        let server = Socket::new(family, Type::Datagram)?;
        server.bind((host, 0))?;
        let client = Socket::new(family, Type::Datagram)?;
        client.bind((host, 0))?;
        client.sendto(b"one datagram", server.local_addr()?)?;
        let (data, from) = server.recvfrom(512)?;
        assert_eq!(data, b"one datagram");
        assert_eq!(from, client.local_addr()?);
        server.sendto(b"reply", &from)?;
        assert_eq!(client.recvfrom(512)?.0, b"reply");
    }
    Ok(())
}

#[test]
fn udp_datagrams_keep_their_boundaries_and_truncate() -> TestResult {
    let server = Socket::new(Family::Inet, Type::Datagram)?;
    server.bind(("127.0.0.1", 0))?;
    let client = Socket::new(Family::Inet, Type::Datagram)?;
    client.connect(server.local_addr()?)?;
    client.send(b"first")?;
    client.send(b"second, longer")?;
    assert_eq!(server.recvfrom(512)?.0, b"first");
    assert_eq!(
        server.recvfrom(6)?.0,
        b"second",
        "the rest of a datagram is dropped"
    );
    Ok(())
}

#[test]
fn unix_datagram() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server_path = dir.path().join("server.sock");
    let client_path = dir.path().join("client.sock");
    let server = Socket::new(Family::Unix, Type::Datagram)?;
    server.bind(server_path.as_path())?;
    let client = Socket::new(Family::Unix, Type::Datagram)?;
    client.bind(client_path.as_path())?;
    client.sendto(b"hello", server_path.as_path())?;
    let (data, from) = server.recvfrom(64)?;
    assert_eq!(
        (data.as_slice(), from),
        (&b"hello"[..], Address::unix(&client_path))
    );
    Ok(())
}

#[test]
fn socketpair_is_connected_both_ways() -> TestResult {
    let (a, b) = socketpair()?;
    a.sendall(b"a to b")?;
    b.sendall(b"b to a")?;
    assert_eq!(b.recv(64)?, b"a to b");
    assert_eq!(a.recv(64)?, b"b to a");
    assert_eq!(a.peer_addr()?.to_string(), "(unnamed)");
    Ok(())
}

#[test]
fn recv_with_a_timeout_and_no_data_times_out() -> TestResult {
    let (a, _b) = socketpair()?;
    a.set_timeout(Some(Duration::from_millis(100)))?;
    assert_eq!(a.timeout(), Some(Duration::from_millis(100)));
    let started = Instant::now();
    let err = a.recv(16).expect_err("nothing was sent");
    assert_eq!(err.kind(), ErrorKind::TimedOut);
    assert!(started.elapsed() >= Duration::from_millis(90));
    assert!(err.to_string().ends_with(": timed out"), "{err}");
    Ok(())
}

#[test]
fn accept_with_a_timeout_times_out() -> TestResult {
    let server = listener(Family::Inet, "127.0.0.1")?;
    server.set_timeout(Some(Duration::from_millis(50)))?;
    let err = server.accept().expect_err("nobody connects");
    assert_eq!(err.kind(), ErrorKind::TimedOut);
    Ok(())
}

#[test]
fn shutdown_write_is_a_half_close() -> TestResult {
    let server = listener(Family::Inet, "127.0.0.1")?;
    let client = create_connection(&server.local_addr()?, None)?;
    let (conn, _) = server.accept()?;
    client.shutdown(Shutdown::Write)?;
    assert!(conn.recv(16)?.is_empty(), "the server reads end of stream");
    conn.sendall(b"after the half-close")?;
    assert_eq!(client.recv(64)?, b"after the half-close");
    let err = client.send(b"x").expect_err("writing after SHUT_WR fails");
    assert_eq!(err.kind(), ErrorKind::BrokenPipe);
    Ok(())
}

#[test]
fn shutdown_read_stops_only_our_reads() -> TestResult {
    let (a, b) = socketpair()?;
    a.shutdown(Shutdown::Read)?;
    assert!(
        a.recv(16)?.is_empty(),
        "reads after SHUT_RD see end of stream"
    );
    a.sendall(b"still writing")?;
    assert_eq!(b.recv(64)?, b"still writing");
    Ok(())
}

#[test]
fn failed_bind_names_the_address_and_the_reason() -> TestResult {
    let first = listener(Family::Inet, "127.0.0.1")?;
    let taken = first.local_addr()?;
    let second = Socket::new(Family::Inet, Type::Stream)?;
    let err = second.bind(&taken).expect_err("the port is taken");
    assert_eq!(err.kind(), ErrorKind::AddrInUse);
    assert_eq!(
        err.to_string(),
        format!("cannot bind {taken}: address already in use")
    );
    Ok(())
}

#[test]
fn refused_connect_names_the_address_and_the_reason() -> TestResult {
    // A port that was just free: bind, read it, close, then connect to it.
    let port = {
        let probe = listener(Family::Inet, "127.0.0.1")?;
        probe.local_addr()?.port().ok_or("a port")?
    };
    let s = Socket::new(Family::Inet, Type::Stream)?;
    let err = s.connect(("127.0.0.1", port)).expect_err("nobody listens");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    assert_eq!(
        err.to_string(),
        format!("cannot connect to 127.0.0.1:{port}: connection refused")
    );
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), ErrorKind::ConnectionRefused);
    Ok(())
}

#[test]
fn options_set_and_read_back() -> TestResult {
    let s = Socket::new(Family::Inet6, Type::Stream)?;
    for on in [true, false] {
        s.set_reuse_address(on)?;
        assert_eq!(s.reuse_address()?, on);
        s.set_reuse_port(on)?;
        assert_eq!(s.reuse_port()?, on);
        s.set_nodelay(on)?;
        assert_eq!(s.nodelay()?, on);
        s.set_keepalive(on)?;
        assert_eq!(s.keepalive()?, on);
        s.set_only_v6(on)?;
        assert_eq!(s.only_v6()?, on);
    }
    s.set_send_buffer_size(64 * 1024)?;
    assert!(s.send_buffer_size()? >= 64 * 1024);
    s.set_recv_buffer_size(64 * 1024)?;
    assert!(s.recv_buffer_size()? >= 64 * 1024);
    s.set_linger(Some(Duration::from_secs(1)))?;
    assert_eq!(s.linger()?, Some(Duration::from_secs(1)));
    assert!(s.fileno() >= 0);
    Ok(())
}

#[test]
fn dualstack_server_accepts_ipv4_clients() -> TestResult {
    let server = create_server(("::", 0), 5, true)?;
    let port = server.local_addr()?.port().ok_or("a port")?;
    let _client = create_connection(("127.0.0.1", port), Some(Duration::from_secs(5)))?;
    let (_conn, peer) = server.accept()?;
    assert!(peer.to_string().contains("127.0.0.1"), "{peer}");
    Ok(())
}

#[test]
fn create_connection_tries_each_address() -> TestResult {
    let server = listener(Family::Inet, "127.0.0.1")?;
    let port = server.local_addr()?.port().ok_or("a port")?;
    // "localhost" may resolve to ::1 first, where nobody listens: the next address is tried.
    let client = create_connection(("localhost", port), Some(Duration::from_secs(5)))?;
    assert_eq!(client.peer_addr()?, server.local_addr()?);
    Ok(())
}

#[test]
fn names_resolve() -> TestResult {
    assert!(!gethostname()?.is_empty());
    let addrs = getaddrinfo("localhost", 80)?;
    assert!(addrs.iter().all(|a| a.port() == Some(80)));
    let err = getaddrinfo("no-such-host.invalid", 80).expect_err("does not resolve");
    assert!(
        err.to_string()
            .starts_with("cannot resolve no-such-host.invalid: ")
    );
    Ok(())
}

#[test]
fn non_blocking_mode_reports_would_block() -> TestResult {
    let server = listener(Family::Inet, "127.0.0.1")?;
    server.set_blocking(false)?;
    assert_eq!(
        server.accept().expect_err("no client").kind(),
        ErrorKind::WouldBlock
    );
    Ok(())
}
