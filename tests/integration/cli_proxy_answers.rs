//! `connect --proxy` against proxies written here that answer the way some real ones do:
//! slowly, a piece at a time (`-w` bounds the whole answer: an HTTP proxy sending a header
//! line every half second held `connect -w 2s` for 21 s), and with bare LF line ends (taken,
//! as ncat and nc take them; it was refused as "did not answer"). Found by an outside audit
//! of socketkit beside real proxies.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::TestResult;
use crate::support::process::{DEADLINE, run, socketkit};

/// A proxy on 127.0.0.1 that serves one client with `serve`; its address.
fn fake_proxy(serve: fn(TcpStream)) -> std::io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?.to_string();
    thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            serve(stream);
        }
    });
    Ok(addr)
}

/// Reads the client's HTTP CONNECT request through its blank line.
fn read_request(stream: &mut TcpStream) {
    let mut request = Vec::new();
    let mut byte = [0u8; 1];
    while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
        request.push(byte[0]);
    }
}

/// `connect -w 1s --proxy PROXY 127.0.0.1:9`: its output and how long it took.
fn connect_through(proxy: &str) -> (crate::support::process::Output, Duration) {
    let mut cmd = socketkit();
    cmd.args(["connect", "-w", "1s", "--proxy", proxy, "127.0.0.1:9"]);
    let started = Instant::now();
    let out = run(cmd, Vec::new(), DEADLINE);
    (out, started.elapsed())
}

#[test]
fn a_proxy_that_dribbles_its_answer_is_cut_at_w() -> TestResult {
    // HTTP: the status line, then a header line every 300 ms, for 8 s.
    let http = fake_proxy(|mut stream| {
        read_request(&mut stream);
        let _ = stream.write_all(b"HTTP/1.1 200 Connection established\r\n");
        for _ in 0..26 {
            thread::sleep(Duration::from_millis(300));
            if stream.write_all(b"X-Slow: 1\r\n").is_err() {
                return;
            }
        }
    })?;
    // SOCKS5: no authentication, then the 10-byte reply a byte every 700 ms.
    let socks = fake_proxy(|mut stream| {
        let mut greeting = [0u8; 3];
        let mut request = [0u8; 10];
        if stream.read_exact(&mut greeting).is_err()
            || stream.write_all(&[5, 0]).is_err()
            || stream.read_exact(&mut request).is_err()
        {
            return;
        }
        for byte in [5u8, 0, 0, 1, 127, 0, 0, 1, 0, 9] {
            thread::sleep(Duration::from_millis(700));
            if stream.write_all(&[byte]).is_err() {
                return;
            }
        }
    })?;
    for proxy in [format!("http://{http}"), format!("socks5://{socks}")] {
        let (out, took) = connect_through(&proxy);
        assert_eq!(out.code(), 1, "{proxy}: {}", out.stderr);
        assert!(
            took < Duration::from_secs(3),
            "{proxy}: {took:?}, {}",
            out.stderr
        );
        assert!(out.stderr.starts_with("error: "), "{proxy}: {}", out.stderr);
    }
    Ok(())
}

#[test]
fn an_http_proxy_answer_with_bare_lf_lines_is_taken() -> TestResult {
    let proxy = fake_proxy(|mut stream| {
        read_request(&mut stream);
        // As if tunnelled: the target's first line right after the answer.
        let _ = stream.write_all(b"HTTP/1.0 200 Connection established\n\nhello\n");
    })?;
    let (out, _) = connect_through(&format!("http://{proxy}"));
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout, b"hello\n", "{}", out.stderr);
    Ok(())
}

/// A tunnel reset while `connect` still sends: the error names the target and the proxy,
/// as the receiving side's does (it named the proxy's address alone when the send met the
/// reset first, 7 runs in 8).
#[test]
fn a_reset_through_a_proxy_names_the_target() -> TestResult {
    for _ in 0..3 {
        // SOCKS5, no authentication: the tunnel is granted, then reset after a first read.
        let proxy = fake_proxy(|mut stream| {
            let mut greeting = [0u8; 3];
            let mut request = [0u8; 10];
            let mut some = [0u8; 1024];
            if stream.read_exact(&mut greeting).is_err()
                || stream.write_all(&[5, 0]).is_err()
                || stream.read_exact(&mut request).is_err()
                || stream.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 9]).is_err()
            {
                return;
            }
            let _ = stream.read(&mut some);
            // Closed with bytes unread and no linger: a reset.
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
        })?;
        let mut cmd = socketkit();
        cmd.args([
            "connect",
            "--proxy",
            &format!("socks5://{proxy}"),
            "127.0.0.1:9",
        ]);
        let out = run(cmd, vec![b'x'; 4 << 20], DEADLINE);
        assert_eq!(out.code(), 1, "{}", out.stderr);
        assert!(
            out.stderr.contains("tcp:127.0.0.1:9 through socks5://"),
            "{}",
            out.stderr
        );
    }
    Ok(())
}

/// A proxy that answers at once that it could not reach the target in time (ncat's HTTP
/// proxy: `504 Gateway Timeout`; SOCKS5 reply 6) was reported after a few milliseconds as
/// "the proxy did not answer within 1s": the proxy's own words are the error.
#[test]
fn a_proxy_that_answers_it_timed_out_is_quoted_not_taken_for_silent() -> TestResult {
    let http = fake_proxy(|mut stream| {
        read_request(&mut stream);
        let _ = stream.write_all(b"HTTP/1.0 504 Gateway Timeout\r\n\r\n");
    })?;
    let socks = fake_proxy(|mut stream| {
        let mut greeting = [0u8; 3];
        let mut request = [0u8; 10];
        if stream.read_exact(&mut greeting).is_ok()
            && stream.write_all(&[5, 0]).is_ok()
            && stream.read_exact(&mut request).is_ok()
        {
            let _ = stream.write_all(&[5, 6, 0, 1, 0, 0, 0, 0, 0, 0]);
        }
    })?;
    for (proxy, said) in [
        (format!("http://{http}"), "504 Gateway Timeout"),
        (format!("socks5://{socks}"), "SOCKS5 reply 6"),
    ] {
        let (out, _) = connect_through(&proxy);
        assert_eq!(out.code(), 1, "{proxy}: {}", out.stderr);
        assert!(
            out.stderr.contains(said) && !out.stderr.contains("did not answer"),
            "{proxy}: {}",
            out.stderr
        );
    }
    Ok(())
}
