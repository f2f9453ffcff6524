//! `socketkit connect --proxy`: through real proxies (microsocks for SOCKS5, ncat's HTTP
//! proxy) to `socketkit serve`, and through proxies written here where the exact bytes
//! matter: an answer and the target's first bytes in one write, what the request names,
//! refusals, silence.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::TestResult;
use crate::support::net::{IO_TIMEOUT, free_port, one_shot, read_once};
use crate::support::process::{
    DEADLINE, Output, Running, lines_of, run, socketkit, stderr_of, wait_bounded,
};
use crate::support::proxies::ProxyProcess;

/// `socketkit serve SERVICE -l ENDPOINT EXTRA…`, running.
fn serve(service: &str, endpoint: &str, extra: &[&str]) -> Running {
    let mut cmd = socketkit();
    cmd.args(["serve", service, "-l", endpoint]).args(extra);
    Running::start(cmd, 1)
}

/// `socketkit connect --proxy PROXY EXTRA… TARGET`.
fn through(proxy: &str, target: &str, extra: &[&str]) -> Command {
    let mut cmd = socketkit();
    cmd.args(["connect", "--proxy", proxy])
        .args(extra)
        .arg(target);
    cmd
}

/// Runs `cmd` with no input, and checks that it printed the tutorial's greeting. With
/// `--no-shutdown`: microsocks and ncat take a client's half-close as the end of the whole
/// tunnel, so the greeting could be dropped on its way if the end of the empty input were
/// passed on at once (docs/cli.md); the server's close ends the run.
fn assert_greeted(mut cmd: Command) {
    cmd.arg("--no-shutdown");
    let out = run(cmd, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "你好",
        "{}",
        out.stderr
    );
}

/// Runs `cmd` with no input, and checks that it failed (exit `code`) saying `said`.
fn assert_fails(cmd: Command, code: i32, said: &str) -> Output {
    let out = run(cmd, Vec::new(), DEADLINE);
    assert_eq!(out.code(), code, "{}", out.stderr);
    assert!(out.stderr.starts_with("error: "), "{}", out.stderr);
    assert!(
        out.stderr.contains(said),
        "wanted {said:?} in:\n{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1, "one line:\n{}", out.stderr);
    out
}

#[test]
fn socks5_through_microsocks_carries_a_banner_and_a_conversation() {
    let Some(proxy) = ProxyProcess::microsocks(None) else {
        return;
    };
    let greeting = serve("greeting", "127.0.0.1:0", &[]);
    assert_greeted(through(&proxy.url("socks5"), &greeting.addr(), &[]));
    // A line at a time, each answer awaited before the next is written, stdout read as a
    // program reads a pipe.
    let echo = serve("echo", "127.0.0.1:0", &[]);
    let mut client = Running::start(through(&proxy.url("socks5"), &echo.addr(), &[]), 0);
    let mut stdin = client.take_stdin();
    let lines = lines_of(client.take_stdout());
    for n in 0..3 {
        let line = format!("line {n}\n");
        stdin.write_all(line.as_bytes()).expect("write");
        let answer = lines.recv_timeout(IO_TIMEOUT).unwrap_or_else(|_| {
            panic!("no answer to line {n}; stderr:\n{}", client.stderr());
        });
        assert_eq!(answer, line.as_bytes());
    }
    drop(stdin);
    assert_eq!(client.wait(DEADLINE).code(), Some(0), "{}", client.stderr());
}

#[test]
fn socks5_credentials_are_asked_for_checked_and_percent_decoded() {
    let Some(proxy) = ProxyProcess::microsocks(Some(("alice", "p@ss:w%rd"))) else {
        return;
    };
    let greeting = serve("greeting", "127.0.0.1:0", &[]);
    let at = format!("127.0.0.1:{}", proxy.port);
    let good = format!("socks5://alice:p%40ss%3Aw%25rd@{at}");
    assert_greeted(through(&good, &greeting.addr(), &[]));
    assert_fails(
        through(&proxy.url("socks5"), &greeting.addr(), &[]),
        1,
        "the proxy wants a user name and password",
    );
    assert_fails(
        through(&format!("socks5://alice:nope@{at}"), &greeting.addr(), &[]),
        1,
        &format!(
            "cannot connect to tcp:{} through socks5://{at}: the proxy refused the user name \
             and password",
            greeting.addr()
        ),
    );
}

#[test]
fn http_connect_through_ncat_carries_a_banner_tls_and_credentials() {
    let Some(proxy) = ProxyProcess::ncat_http(None) else {
        return;
    };
    let greeting = serve("greeting", "127.0.0.1:0", &[]);
    // No scheme: HTTP, as curl and ncat read it.
    assert_greeted(through(
        &format!("127.0.0.1:{}", proxy.port),
        &greeting.addr(),
        &[],
    ));
    // TLS inside the tunnel: the handshake is the target's, end to end.
    let tls = serve("greeting", "tls:127.0.0.1:0", &["--tls-self-signed"]);
    assert_greeted(through(
        &proxy.url("http"),
        &tls.endpoints()[0],
        &["--tls-insecure", "-q"],
    ));
    let Some(guarded) = ProxyProcess::ncat_http(Some("bob:pw")) else {
        return;
    };
    let at = format!("127.0.0.1:{}", guarded.port);
    assert_greeted(through(
        &format!("http://bob:pw@{at}"),
        &greeting.addr(),
        &[],
    ));
    assert_fails(
        through(&guarded.url("http"), &greeting.addr(), &[]),
        1,
        "the proxy wants a user name and password (http://USER:PASSWORD@HOST): HTTP 407",
    );
}

/// Reads from `stream` until `end` has come; what was read.
fn read_through(stream: &mut TcpStream, end: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(end) {
        match read_once(stream, &mut byte) {
            Ok(1) => got.push(byte[0]),
            _ => panic!("the client stopped before {end:?}: {got:?}"),
        }
    }
    got
}

/// Reads exactly `n` bytes.
fn read_n(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    stream.read_exact(&mut buf).expect("the client's bytes");
    buf
}

#[test]
fn the_targets_first_bytes_in_the_proxys_answer_are_kept() {
    // HTTP: the request names the target as written (the proxy resolves it), and the
    // banner comes in the same write as the answer.
    let (addr, proxy) = one_shot(|mut stream| {
        let request = read_through(&mut stream, b"\r\n\r\n");
        let text = String::from_utf8_lossy(&request);
        assert!(
            text.starts_with("CONNECT target.invalid:25 HTTP/1.1\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nHost: target.invalid:25\r\n"), "{text}");
        assert!(!text.contains("Authorization"), "{text}");
        stream
            .write_all(b"HTTP/1.1 200 Connection established\r\nVia: test\r\n\r\n220 ready\r\n")
            .expect("answer");
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        assert_eq!(rest, b"QUIT\n");
    });
    let out = run(
        through(&format!("http://{addr}"), "target.invalid:25", &[]),
        b"QUIT\n".to_vec(),
        DEADLINE,
    );
    proxy.join().expect("the proxy's checks");
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout, b"220 ready\r\n");

    // SOCKS5 with the name resolved by the proxy: the request carries the name (type 3),
    // and the reply, a domain-name bound address, is read to its end and no further.
    let (addr, proxy) = one_shot(|mut stream| {
        assert_eq!(read_n(&mut stream, 3), [5, 1, 0], "one method: none");
        stream.write_all(&[5, 0]).expect("method");
        let name = b"target.invalid";
        let mut wanted = vec![5, 1, 0, 3, name.len() as u8];
        wanted.extend_from_slice(name);
        wanted.extend_from_slice(&25u16.to_be_bytes());
        assert_eq!(read_n(&mut stream, wanted.len()), wanted);
        let mut reply = vec![5, 0, 0, 3, 5];
        reply.extend_from_slice(b"relay");
        reply.extend_from_slice(&[0x1F, 0x90]);
        reply.extend_from_slice(b"SSH-2.0-banner\r\n");
        stream.write_all(&reply).expect("reply");
    });
    let out = run(
        through(&format!("socks5h://{addr}"), "target.invalid:25", &[]),
        Vec::new(),
        DEADLINE,
    );
    proxy.join().expect("the proxy's checks");
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout, b"SSH-2.0-banner\r\n");
}

#[test]
fn refusals_silence_and_an_absent_proxy_are_one_line_errors() {
    let (addr, proxy) = one_shot(|mut stream| {
        read_n(&mut stream, 3);
        stream.write_all(&[5, 0]).expect("method");
        read_n(&mut stream, 4 + 1 + "target.invalid".len() + 2);
        stream
            .write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0])
            .expect("reply");
    });
    let url = format!("socks5h://{addr}");
    assert_fails(
        through(&url, "target.invalid:25", &[]),
        1,
        &format!(
            "error: cannot connect to tcp:target.invalid:25 through {url}: the proxy could not \
             connect: connection refused (SOCKS5 reply 5)"
        ),
    );
    proxy.join().expect("the proxy");

    let (addr, proxy) = one_shot(|mut stream| {
        read_through(&mut stream, b"\r\n\r\n");
        stream
            .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            .expect("answer");
    });
    assert_fails(
        through(&format!("http://{addr}"), "target.invalid:25", &[]),
        1,
        "the proxy refused: HTTP 403 Forbidden",
    );
    proxy.join().expect("the proxy");

    // A proxy that takes the request and says nothing: -w bounds the wait for its answer.
    let (addr, proxy) = one_shot(|mut stream| {
        read_through(&mut stream, b"\r\n\r\n");
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
    });
    let started = Instant::now();
    assert_fails(
        through(
            &format!("http://{addr}"),
            "target.invalid:25",
            &["-w", "1s"],
        ),
        1,
        "the proxy did not answer within 1s",
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    proxy.join().expect("the proxy");

    let absent = free_port();
    assert_fails(
        through(&format!("socks5://127.0.0.1:{absent}"), "127.0.0.1:25", &[]),
        1,
        &format!("error: cannot connect to proxy socks5://127.0.0.1:{absent}: connection refused"),
    );
}

/// `socketkit forward -l 127.0.0.1:0 --to TARGET --proxy PROXY EXTRA…`, running.
fn forward_through(proxy: &str, target: &str, extra: &[&str]) -> Running {
    let mut cmd = socketkit();
    cmd.args([
        "forward",
        "-l",
        "127.0.0.1:0",
        "--to",
        target,
        "--proxy",
        proxy,
    ])
    .args(extra);
    Running::start(cmd, 1)
}

#[test]
fn forward_reaches_its_target_through_socks5_and_http_proxies() {
    let Some(socks) = ProxyProcess::microsocks(Some(("alice", "pw"))) else {
        return;
    };
    let echo = serve("echo", "127.0.0.1:0", &[]);
    let url = format!("socks5://alice:pw@127.0.0.1:{}", socks.port);
    let relay = forward_through(&url, &echo.addr(), &[]);
    assert!(
        relay
            .stderr()
            .contains(&format!("through socks5://127.0.0.1:{}", socks.port)),
        "the listening line names the proxy: {}",
        relay.stderr()
    );
    // Two clients at once, each a line at a time, each answer awaited.
    let mut clients: Vec<TcpStream> = (0..2)
        .map(|_| crate::support::net::connect(&relay.addr()))
        .collect();
    for round in 0..3 {
        for (n, client) in clients.iter_mut().enumerate() {
            let line = format!("client {n} round {round}\n");
            client.write_all(line.as_bytes()).expect("send");
            assert_eq!(
                read_n(client, line.len()),
                line.as_bytes(),
                "{}",
                relay.stderr()
            );
        }
    }
    let Some(http) = ProxyProcess::ncat_http(None) else {
        return;
    };
    let tls = serve("greeting", "tls:127.0.0.1:0", &["--tls-self-signed"]);
    let relay = forward_through(&http.url("http"), &tls.endpoints()[0], &["--tls-insecure"]);
    let mut client = crate::support::net::connect(&relay.addr());
    let mut greeting = Vec::new();
    client.read_to_end(&mut greeting).expect("the greeting");
    assert_eq!(
        String::from_utf8_lossy(&greeting),
        "你好",
        "{}",
        relay.stderr()
    );
}

#[test]
fn forward_keeps_the_targets_first_bytes_and_resets_a_client_it_cannot_serve() {
    let (addr, proxy) = one_shot(|mut stream| {
        let request = read_through(&mut stream, b"\r\n\r\n");
        assert!(request.starts_with(b"CONNECT mail.invalid:25 HTTP/1.1\r\n"));
        stream
            .write_all(b"HTTP/1.1 200 OK\r\n\r\n220 mail.invalid ready\r\n")
            .expect("answer");
    });
    let relay = forward_through(&format!("http://{addr}"), "mail.invalid:25", &[]);
    let mut client = crate::support::net::connect(&relay.addr());
    let mut banner = Vec::new();
    client.read_to_end(&mut banner).expect("the banner");
    proxy.join().expect("the proxy's checks");
    assert_eq!(banner, b"220 mail.invalid ready\r\n");

    let absent = free_port();
    let url = format!("socks5://127.0.0.1:{absent}");
    let relay = forward_through(&url, "127.0.0.1:25", &[]);
    let mut client = crate::support::net::connect(&relay.addr());
    let read = read_once(&mut client, &mut [0u8; 16]);
    assert!(
        read.as_ref()
            .is_err_and(|err| err.kind() == std::io::ErrorKind::ConnectionReset),
        "a reset, not an end: {read:?}"
    );
    relay.wait_for_stderr(
        &[&format!(
            "cannot reach tcp:127.0.0.1:25 through {url}: cannot connect to the proxy: \
             connection refused; resetting the client"
        )],
        DEADLINE,
    );
}

#[test]
fn proxy_usage_errors_exit_2() {
    for (proxy, target, said) in [
        (
            "https://127.0.0.1:1080",
            "127.0.0.1:25",
            "invalid proxy 'https://127.0.0.1:1080': https:// proxies are not supported",
        ),
        (
            "socks4://u:pw@127.0.0.1:1080",
            "127.0.0.1:25",
            "SOCKS4 takes a user id and no password",
        ),
        (
            "http://127.0.0.1",
            "udp:127.0.0.1:53",
            "--proxy carries tcp: and tls: endpoints only",
        ),
        (
            "http://127.0.0.1",
            "unix:/tmp/x.sock",
            "--proxy carries tcp: and tls: endpoints only",
        ),
        (
            "http://127.0.0.1:1/path",
            "127.0.0.1:25",
            "a proxy URL has no path",
        ),
        ("http://:3128", "127.0.0.1:25", "missing the proxy's host"),
    ] {
        assert_fails(through(proxy, target, &[]), 2, said);
    }
    for (args, said) in [
        (
            &["-l", "udp:127.0.0.1:0", "--to", "udp:127.0.0.1:53"][..],
            "--proxy applies to stream forwarding only",
        ),
        (
            &["-l", "127.0.0.1:0", "--to", "unix:/tmp/x.sock"],
            "cannot forward to unix:/tmp/x.sock through a proxy",
        ),
    ] {
        let mut cmd = socketkit();
        cmd.arg("forward")
            .args(args)
            .args(["--proxy", "socks5://127.0.0.1:1080"]);
        assert_fails(cmd, 2, said);
    }
}

/// A TLS handshake through a proxy that fails names the proxy beside the target, as the
/// proxy's own failures do: `cannot connect to tls:HOST:PORT through socks5://…: …` (it
/// named the target alone, as if it had been reached directly).
#[test]
fn a_tls_handshake_failure_through_a_proxy_names_the_proxy() {
    let mut proxy = socketkit();
    proxy.args(["forward", "-l", "127.0.0.1:0", "--socks"]);
    let proxy = Running::start(proxy, 1);
    let url = format!("socks5://{}", proxy.addr());
    // A certificate nobody vouches for: the handshake fails at verification.
    let tls = serve("greeting", "tls:127.0.0.1:0", &["--tls-self-signed"]);
    let target = &tls.endpoints()[0];
    let out = assert_fails(
        through(&url, target, &[]),
        1,
        &format!("{target} through {url}: "),
    );
    assert!(out.stderr.contains("certificate"), "{}", out.stderr);
}

#[test]
fn a_proxy_answer_that_came_while_connect_was_stopped_past_w_is_in_time() -> TestResult {
    let (asked_tx, asked) = std::sync::mpsc::channel();
    let (answer_tx, answer) = std::sync::mpsc::channel::<()>();
    let (addr, proxy) = one_shot(move |mut stream| {
        read_through(&mut stream, b"\r\n\r\n");
        let _ = asked_tx.send(());
        if answer.recv_timeout(IO_TIMEOUT).is_ok() {
            let _ = stream.write_all(b"HTTP/1.1 200 Connection established\r\n\r\nhello\n");
        }
    });
    let mut cmd = through(
        &format!("http://{addr}"),
        "target.invalid:25",
        &["-w", "1s"],
    );
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let pid = i32::try_from(child.id())?;
    asked.recv_timeout(IO_TIMEOUT)?;
    // The answer comes while connect is stopped, for longer than its -w.
    // SAFETY: kill(2) of a child of this test with a signal number; no memory involved.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    answer_tx.send(())?;
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let status = wait_bounded(&mut child, DEADLINE);
    let err = stderr_of(&mut child)?;
    let mut out = Vec::new();
    child.stdout.take().ok_or("stdout")?.read_to_end(&mut out)?;
    proxy.join().map_err(|_| "the proxy panicked")?;
    assert_eq!(status.code(), Some(0), "{err}");
    assert_eq!(out, b"hello\n", "{err}");
    Ok(())
}
