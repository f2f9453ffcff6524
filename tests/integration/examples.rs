//! The framework examples under `examples/`, run as a user would and spoken to over loopback.

use std::io::{Read, Write};
use std::net::{Shutdown, UdpSocket};
use std::time::Duration;

use crate::support::TestResult;
use crate::support::net::{IO_TIMEOUT, connect, read_to_end};
use crate::support::process::{Running, example};

fn start(name: &str, endpoint: &str) -> Running {
    let mut cmd = example(name);
    cmd.arg(endpoint);
    Running::start(cmd, 1)
}

#[test]
fn echo_server_echoes_until_the_client_closes() -> TestResult {
    let server = start("echo_server", "127.0.0.1:0");
    let mut stream = connect(&server.addr());
    stream.write_all(b"echo me")?;
    stream.shutdown(Shutdown::Write)?;
    assert_eq!(read_to_end(&mut stream), b"echo me");
    Ok(())
}

#[test]
fn udp_echo_answers_each_datagram() -> TestResult {
    let server = start("udp_echo", "udp:127.0.0.1:0");
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(IO_TIMEOUT))?;
    socket.send_to(b"dgram", server.endpoints()[0].trim_start_matches("udp:"))?;
    let mut buf = [0u8; 16];
    let n = socket.recv(&mut buf)?;
    assert_eq!(&buf[..n], b"dgram");
    Ok(())
}

#[test]
fn blocking_handler_serves_clients_concurrently() -> TestResult {
    let server = start("blocking_handler", "127.0.0.1:0");
    // The first client holds its thread (it never closes) while the second is answered.
    let mut first = connect(&server.addr());
    first.write_all(b"held open\n")?;
    let mut second = connect(&server.addr());
    second.write_all("hello\n你好\n".as_bytes())?;
    second.shutdown(Shutdown::Write)?;
    assert_eq!(read_to_end(&mut second), b"5\n2\n");
    let mut answer = [0u8; 2];
    first.read_exact(&mut answer)?;
    assert_eq!(&answer, b"9\n");
    Ok(())
}

#[test]
fn graceful_shutdown_lets_the_connection_finish() -> TestResult {
    let mut server = start("graceful_shutdown", "127.0.0.1:0");
    let mut stream = connect(&server.addr());
    // In flight: accepted, its answer two seconds away.
    server.wait_for_stderr(&["answering in 2s"], Duration::from_secs(10));
    server.signal(libc::SIGINT);
    assert_eq!(read_to_end(&mut stream), b"finished\n");
    assert_eq!(server.wait(Duration::from_secs(15)).code(), Some(0));
    server.assert_said("every connection is closed");
    Ok(())
}

#[test]
fn tls_echo_echoes_over_tls_with_its_self_signed_certificate() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let mut cmd = example("tls_echo");
    cmd.arg("tls:127.0.0.1:0").env("TMPDIR", tmp.path());
    let server = Running::start(cmd, 1);
    let ca = tmp.path().join("tls_echo.pem");
    server.wait_for_stderr(&["written to"], Duration::from_secs(10));
    let mut client = crate::support::process::socketkit();
    client
        .arg("connect")
        .arg(format!("tls:localhost:{}", server.port()))
        .arg("--tls-ca")
        .arg(&ca);
    let out = crate::support::process::run(
        client,
        b"echo me, encrypted".to_vec(),
        Duration::from_secs(30),
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout, b"echo me, encrypted");
    Ok(())
}

/// An example that cannot listen (the README's own server holds 12345, the examples'
/// default) says so in one `error:` line and exits 1, as the CLI does: it printed the
/// error's `Debug` form, a struct dump (an outside audit following the docs).
#[test]
fn an_example_that_cannot_listen_says_why_in_one_error_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = taken.local_addr().expect("addr").to_string();
    let taken_udp = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let udp = format!("udp:{}", taken_udp.local_addr().expect("addr"));
    for (name, endpoint) in [
        ("echo_server", endpoint.clone()),
        ("blocking_handler", endpoint.clone()),
        ("graceful_shutdown", endpoint.clone()),
        ("udp_echo", udp.clone()),
        ("tls_echo", format!("tls:{endpoint}")),
    ] {
        let mut cmd = example(name);
        cmd.arg(&endpoint);
        let out = crate::support::process::run(cmd, Vec::new(), Duration::from_secs(20));
        assert_eq!(out.code(), 1, "{name}: {}", out.stderr);
        let said = out.stderr.trim_end();
        assert!(
            said.lines()
                .last()
                .is_some_and(|line| line.starts_with("error: cannot ")),
            "{name}: {said}"
        );
        assert!(!said.contains("Error {"), "{name}: {said}");
    }
}
