//! `listen --proxy-protocol` (SPEC §3, §3.3): the netcat listener behind HAProxy's
//! `send-proxy-v2` and a Python client's v1 header names the real client in its `-v` log,
//! puts only the service's bytes on stdout, and refuses untrusted sources, missing or late
//! headers — before the access rules, which see the header's client.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::process::Command;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use crate::balancer::{sample, start_with_metrics};
use crate::proxy_protocol::assert_refused;
use crate::support::TestResult;
use crate::support::haproxy::HaProxy;
use crate::support::net::{IO_TIMEOUT, connect_from, free_port};
use crate::support::process::{DEADLINE, Running, lines_of, run, socketkit};
use crate::support::tools::available;

/// The next line `listen` wrote to stdout, within the deadline.
fn next_line(lines: &Receiver<Vec<u8>>) -> String {
    let line = lines.recv_timeout(DEADLINE).expect("a line on stdout");
    String::from_utf8(line).expect("text")
}

#[test]
fn listen_keep_open_behind_haproxy_send_proxy_v2_names_each_client() -> TestResult {
    let mut cmd = socketkit();
    cmd.args(["listen", "-k", "-v", "127.0.0.1:0"]).args([
        "--proxy-protocol",
        "--trusted-proxy",
        "127.0.0.1/32",
    ]);
    let mut listener = Running::start(cmd, 1);
    let lines = lines_of(listener.take_stdout());
    let front = free_port();
    let config = format!(
        "defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n\
         listen front\n  bind 127.0.0.1:{front}\n  server s {} send-proxy-v2\n",
        listener.addr()
    );
    let Some(_haproxy) = HaProxy::start(&config, &[front]) else {
        return Ok(());
    };
    for (i, source) in ["127.0.0.2", "127.0.0.3"].into_iter().enumerate() {
        let mut client = connect_from(source, format!("127.0.0.1:{front}").parse()?);
        let own = client.local_addr()?;
        client.write_all(format!("through haproxy {i}\n").as_bytes())?;
        client.shutdown(Shutdown::Write)?;
        // The header's bytes are taken off: stdout holds the client's bytes only.
        assert_eq!(next_line(&lines), format!("through haproxy {i}\n"));
        let _ = client.read_to_end(&mut Vec::new());
        listener.wait_for_stderr(&[&format!("connection from {own}")], DEADLINE);
    }
    Ok(())
}

#[test]
fn a_python_client_with_a_v1_header_is_named_by_its_header() -> TestResult {
    if !available("python3") {
        return Ok(());
    }
    let mut cmd = socketkit();
    cmd.args(["listen", "-v", "127.0.0.1:0"]).args([
        "--proxy-protocol",
        "--trusted-proxy",
        "127.0.0.0/8",
    ]);
    let mut listener = Running::start_with_stdin(cmd, 1, b"reply".to_vec());
    let port = listener.port();
    let script = format!(
        "import socket\n\
         s = socket.create_connection(('127.0.0.1', {port}), timeout=10)\n\
         s.sendall(b'PROXY TCP4 192.0.2.9 192.0.2.1 5000 80\\r\\npayload')\n\
         s.shutdown(socket.SHUT_WR)\n\
         got = b''\n\
         while True:\n\
         \x20   piece = s.recv(4096)\n\
         \x20   if not piece: break\n\
         \x20   got += piece\n\
         print(got.decode())\n"
    );
    let out = run(
        {
            let mut python = Command::new("python3");
            python.arg("-c").arg(script);
            python
        },
        Vec::new(),
        DEADLINE,
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), "reply");
    assert_eq!(
        listener.wait(DEADLINE).code(),
        Some(0),
        "{}",
        listener.stderr()
    );
    assert_eq!(listener.stdout_text(), "payload");
    listener.assert_said("connection from 192.0.2.9:5000");
    // What crossed the socket, the 40-byte header included, as `serve` counts it.
    listener.assert_said("bytes_in=47 ");
    Ok(())
}

#[test]
fn untrusted_missing_late_and_denied_clients_are_refused_and_counted() -> TestResult {
    let mut cmd = socketkit();
    cmd.args([
        "listen",
        "-k",
        "-v",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
    ])
    .args(["--proxy-protocol", "--trusted-proxy", "127.0.0.2"])
    .args(["--proxy-header-timeout", "300ms", "--deny", "192.0.2.66"]);
    let (mut listener, metrics) = start_with_metrics(cmd);
    let lines = lines_of(listener.take_stdout());
    let addr: std::net::SocketAddr = listener.addr().parse()?;
    let header = b"PROXY TCP4 192.0.2.9 192.0.2.1 5000 80\r\n";
    // A valid header from a source that is not a trusted proxy.
    assert_refused("127.0.0.3", addr, &[header, b"untrusted\n"]);
    // A trusted proxy without a header.
    assert_refused("127.0.0.2", addr, &[b"GET / HTTP/1.1\r\n\r\n"]);
    // Half a header, then silence: closed at the deadline.
    let mut late = connect_from("127.0.0.2", addr);
    late.write_all(&header[..20])?;
    let started = Instant::now();
    let _ = late.read_to_end(&mut Vec::new());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < IO_TIMEOUT,
        "closed after {waited:?}"
    );
    // A header naming a denied client: the access rules see the header's address.
    assert_refused(
        "127.0.0.2",
        addr,
        &[b"PROXY TCP4 192.0.2.66 192.0.2.1 5000 80\r\ndenied\n"],
    );
    // And a good one still gets through, header taken, bytes kept.
    let mut good = connect_from("127.0.0.2", addr);
    good.write_all(&[&header[..], b"admitted\n"].concat())?;
    good.shutdown(Shutdown::Write)?;
    assert_eq!(next_line(&lines), "admitted\n");
    let _ = good.read_to_end(&mut Vec::new());
    listener.wait_for_stderr(&["connection from 192.0.2.9:5000"], DEADLINE);
    let listener_label = format!("listener=\"tcp:{addr}\"");
    let reason = |reason: &str| format!("{listener_label},reason=\"{reason}\"");
    let refused = sample(
        &metrics,
        "socketkit_connections_refused_total",
        &reason("proxy"),
    );
    assert_eq!(refused, 3);
    assert_eq!(
        sample(
            &metrics,
            "socketkit_connections_refused_total",
            &reason("acl")
        ),
        1
    );
    let stderr = listener.stderr();
    assert!(stderr.contains("not a trusted proxy"), "{stderr}");
    assert!(!stderr.contains("untrusted"), "{stderr}");
    Ok(())
}

#[test]
fn listen_proxy_options_are_checked() {
    for (args, words) in [
        (
            &[
                "udp:127.0.0.1:0",
                "--proxy-protocol",
                "--trusted-proxy",
                "::1",
            ][..],
            "error: --proxy-protocol applies to stream endpoints only\n",
        ),
        (
            &[
                "127.0.0.1:0",
                "--proxy-protocol",
                "--trusted-proxy",
                "300.0.0.1",
            ][..],
            "error: invalid network '300.0.0.1' for --trusted-proxy",
        ),
    ] {
        let mut cmd = socketkit();
        cmd.arg("listen").args(args);
        let out = run(cmd, Vec::new(), DEADLINE);
        assert_eq!(out.code(), 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.starts_with(words), "{args:?}: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    }
    let mut cmd = socketkit();
    cmd.args(["listen", "127.0.0.1:0", "--proxy-protocol"]);
    assert_eq!(run(cmd, Vec::new(), DEADLINE).code(), 2);
}
