//! `socketkit forward --socks`: a SOCKS5 proxy whose clients name their targets, driven by
//! socketkit's own `connect --proxy`, by curl, and by raw bytes written here for the
//! answers a well-behaved client never provokes.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::support::net::{IO_TIMEOUT, connect, free_port, read_once};
use crate::support::process::{DEADLINE, Output, Running, run, socketkit};

/// `socketkit forward -l 127.0.0.1:0 --socks EXTRA…`, running.
fn socks(extra: &[&str]) -> Running {
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "127.0.0.1:0", "--socks"])
        .args(extra);
    Running::start(cmd, 1)
}

/// `out` is exit `code` with `words` on stderr.
fn fails_with(out: &Output, code: i32, words: &str) {
    assert_eq!(out.code(), code, "{}", out.stderr);
    assert!(out.stderr.contains(words), "{}", out.stderr);
}

/// `socketkit serve SERVICE -l 127.0.0.1:0 [-- PROGRAM…]`, running.
fn serve(service: &str, program: &[&str]) -> Running {
    let mut cmd = socketkit();
    cmd.args(["serve", service, "-l", "127.0.0.1:0"]);
    if !program.is_empty() {
        cmd.arg("--").args(program);
    }
    Running::start(cmd, 1)
}

#[test]
fn socks_serves_socketkit_and_curl_clients_and_passes_the_half_close_on() {
    let proxy = socks(&[]);
    proxy.assert_said("(socks5 proxy)");
    let url = format!("socks5h://{}", proxy.addr());
    // A name resolved by the proxy.
    let greeting = serve("greeting", &[]);
    let mut cmd = socketkit();
    cmd.args(["connect", "--proxy", &url])
        .arg(format!("localhost:{}", greeting.port()));
    let out = run(cmd, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "你好");
    // stdin's end at once: the half-close goes through and the echo still comes back.
    let echo = serve("echo", &[]);
    let mut cmd = socketkit();
    cmd.args([
        "connect",
        "--proxy",
        &url.replace("socks5h", "socks5"),
        &echo.addr(),
    ]);
    let out = run(cmd, b"hello through socks\n".to_vec(), DEADLINE);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout, b"hello through socks\n");
    if !crate::support::tools::available("curl") {
        return;
    }
    let http = serve(
        "exec",
        &[
            "sh",
            "-c",
            "printf 'HTTP/1.0 200 OK\\r\\nContent-Length: 3\\r\\n\\r\\nhi\\n'",
        ],
    );
    let out = run(
        {
            let mut curl = std::process::Command::new("curl");
            curl.args([
                "-sS",
                "--max-time",
                "10",
                "--socks5-hostname",
                &proxy.addr(),
            ])
            .arg(format!("http://localhost:{}/", http.port()));
            curl
        },
        Vec::new(),
        DEADLINE,
    );
    assert_eq!(out.code(), 0, "curl: {}", out.stderr);
    assert_eq!(out.stdout, b"hi\n");
}

/// A raw client: greets offering `methods`, and returns the connection and the method chosen.
fn greeted(proxy: &Running, methods: &[u8]) -> (std::net::TcpStream, [u8; 2]) {
    let mut client = connect(&proxy.addr());
    let greeting = [&[5, methods.len() as u8][..], methods].concat();
    client.write_all(&greeting).expect("greet");
    let mut chosen = [0u8; 2];
    client.read_exact(&mut chosen).expect("the method");
    (client, chosen)
}

/// Reads the reply to a request, and then the end of the connection.
fn reply_then_end(client: &mut std::net::TcpStream) -> u8 {
    let mut reply = [0u8; 10];
    client.read_exact(&mut reply).expect("a reply");
    assert_eq!(reply[0], 5);
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).expect("the end");
    assert!(rest.is_empty(), "nothing after a refusal: {rest:?}");
    reply[1]
}

#[test]
fn socks_answers_what_it_cannot_do_with_its_replies() {
    let proxy = socks(&["--timeout", "1s"]);
    // A target that refuses: reply 5, which the client names.
    let closed = free_port();
    let mut cmd = socketkit();
    cmd.args(["connect", "--proxy", &format!("socks5://{}", proxy.addr())])
        .arg(format!("127.0.0.1:{closed}"));
    let out = run(cmd, Vec::new(), DEADLINE);
    fails_with(&out, 1, "connection refused (SOCKS5 reply 5)");
    // BIND: command not supported (7).
    let (mut client, chosen) = greeted(&proxy, &[0]);
    assert_eq!(chosen, [5, 0]);
    client
        .write_all(&[5, 2, 0, 1, 127, 0, 0, 1, 0, 80])
        .expect("BIND");
    assert_eq!(reply_then_end(&mut client), 7);
    // An address type that does not exist: 8.
    let (mut client, _) = greeted(&proxy, &[0]);
    client.write_all(&[5, 1, 0, 9]).expect("request");
    assert_eq!(reply_then_end(&mut client), 8);
    // Only a password offered: no acceptable method, then the end.
    let (mut client, chosen) = greeted(&proxy, &[2]);
    assert_eq!(chosen, [5, 0xFF]);
    assert_eq!(read_once(&mut client, &mut [0u8; 1]).expect("the end"), 0);
    // Not SOCKS at all: closed without a word (a reset: the rest of its bytes go unread).
    let mut client = connect(&proxy.addr());
    client.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("HTTP");
    let read = read_once(&mut client, &mut [0u8; 64]);
    assert!(
        matches!(&read, Ok(0))
            || read
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "no answer to a stranger: {read:?}"
    );
    // A client that says nothing is closed after the timeout.
    let started = Instant::now();
    let mut client = connect(&proxy.addr());
    client.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    assert_eq!(read_once(&mut client, &mut [0u8; 1]).expect("the end"), 0);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
}

/// `connect --proxy URL TARGET` with no input, as a client of the proxy.
fn greeting_through(url: &str, target: &str) -> Output {
    let mut cmd = socketkit();
    cmd.args(["connect", "--no-shutdown", "--proxy", url, target]);
    run(cmd, Vec::new(), DEADLINE)
}

#[test]
fn socks_users_are_asked_for_their_name_and_password() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("users");
    std::fs::write(&file, "# who may use it\nalice:pw:with:colons\nbob:\n").expect("write");
    let proxy = socks(&["--socks-users", file.to_str().expect("UTF-8 path")]);
    let greeting = serve("greeting", &[]);
    let through = |url: &str| greeting_through(url, &greeting.addr());
    for user in ["alice:pw%3Awith%3Acolons", "bob"] {
        let out = through(&format!("socks5://{user}@{}", proxy.addr()));
        assert_eq!(out.code(), 0, "{user}: {}", out.stderr);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "你好");
    }
    let out = through(&format!("socks5://alice:pw@{}", proxy.addr()));
    fails_with(&out, 1, "the proxy refused the user name and password");
    let out = through(&format!("socks5://{}", proxy.addr()));
    fails_with(&out, 1, "the proxy wants a user name and password");
    // A file that cannot be read is exit 1, one that is malformed exit 2, naming its line.
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "127.0.0.1:0", "--socks", "--socks-users"])
        .arg(dir.path().join("missing"));
    let out = run(cmd, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(
        out.stderr.starts_with("error: cannot load SOCKS users "),
        "{}",
        out.stderr
    );
    std::fs::write(&file, "alice:1\nalice:2\n").expect("write");
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "127.0.0.1:0", "--socks", "--socks-users"])
        .arg(&file);
    let out = run(cmd, Vec::new(), DEADLINE);
    fails_with(&out, 2, "line 2: user 'alice' is named twice");
}

/// SOCKS4 and SOCKS4a clients, as `ssh -D` serves them: socketkit's own and curl's (whose
/// SOCKS4a sends even an address as a name); a proxy that asks for users refuses them, for
/// SOCKS4 has no password.
#[test]
fn socks4_and_socks4a_clients_are_served() {
    let proxy = socks(&[]);
    let greeting = serve("greeting", &[]);
    for (url, target) in [
        (format!("socks4://{}", proxy.addr()), greeting.addr()),
        (
            format!("socks4a://bob@{}", proxy.addr()),
            format!("localhost:{}", greeting.port()),
        ),
    ] {
        let out = greeting_through(&url, &target);
        assert_eq!(out.code(), 0, "{url}: {}", out.stderr);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "你好", "{url}");
    }
    // A refusal is SOCKS4's one code.
    let closed = format!("127.0.0.1:{}", crate::support::net::free_port());
    let out = greeting_through(&format!("socks4://{}", proxy.addr()), &closed);
    fails_with(&out, 1, "SOCKS4 reply 91");
    if crate::support::tools::available("curl") {
        for option in ["--socks4", "--socks4a"] {
            let mut curl = std::process::Command::new("curl");
            curl.args(["-sS", "--max-time", "10", option, &proxy.addr()])
                .arg(format!("telnet://{}", greeting.addr()));
            let out = run(curl, Vec::new(), DEADLINE);
            assert_eq!(out.code(), 0, "curl {option}: {}", out.stderr);
            assert_eq!(String::from_utf8_lossy(&out.stdout), "你好", "{option}");
        }
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("users");
    std::fs::write(&file, "alice:pw\n").expect("write");
    let guarded = socks(&["--socks-users", file.to_str().expect("UTF-8 path")]);
    let url = format!("socks4://alice@{}", guarded.addr());
    fails_with(
        &greeting_through(&url, &greeting.addr()),
        1,
        "SOCKS4 reply 91",
    );
}

/// RFC 1929's sub-negotiation starts with its version, 1: any other is refused like a wrong
/// password (it was let through on the right password). Found by an outside audit's fuzzer.
#[test]
fn a_password_sub_negotiation_of_another_version_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("users");
    std::fs::write(&file, "alice:pw\n").expect("write");
    let proxy = socks(&["--socks-users", file.to_str().expect("UTF-8 path")]);
    for (version, status) in [(1, 0), (0, 1), (5, 1), (0xff, 1)] {
        let mut client = std::net::TcpStream::connect(proxy.addr()).expect("connect");
        client.set_read_timeout(Some(DEADLINE)).expect("a timeout");
        client.write_all(&[5, 1, 2]).expect("the greeting");
        let mut method = [0; 2];
        client.read_exact(&mut method).expect("the method");
        assert_eq!(method, [5, 2]);
        client
            .write_all(&[version, 5, b'a', b'l', b'i', b'c', b'e', 2, b'p', b'w'])
            .expect("the user and password");
        let mut answer = [0; 2];
        client.read_exact(&mut answer).expect("the answer");
        assert_eq!(answer, [1, status], "version {version}");
    }
}

#[test]
fn socks_users_are_read_again_on_sighup() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("users");
    std::fs::write(&file, "alice:old\n").expect("write");
    let proxy = socks(&["--socks-users", file.to_str().expect("UTF-8 path")]);
    let greeting = serve("greeting", &[]);
    let through = |user: &str| {
        greeting_through(
            &format!("socks5://{user}@{}", proxy.addr()),
            &greeting.addr(),
        )
    };
    assert_eq!(through("alice:old").code(), 0);
    // alice's password changes and carol joins.
    std::fs::write(&file, "alice:new\ncarol:pw\n").expect("rewrite");
    proxy.signal(libc::SIGHUP);
    proxy.wait_for_stderr(
        &[&format!("socks users reloaded from {}: 2", file.display())],
        Duration::from_secs(10),
    );
    for user in ["alice:new", "carol:pw"] {
        let out = through(user);
        assert_eq!(out.code(), 0, "{user}: {}", out.stderr);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "你好");
    }
    fails_with(
        &through("alice:old"),
        1,
        "the proxy refused the user name and password",
    );
    // A file that no longer reads keeps the users in force.
    std::fs::write(&file, "carol\n").expect("rewrite");
    proxy.signal(libc::SIGHUP);
    proxy.wait_for_stderr(
        &["socks users not reloaded, the old ones stay: invalid --socks-users"],
        Duration::from_secs(10),
    );
    assert_eq!(through("carol:pw").code(), 0);
}

#[test]
fn socks_destinations_are_limited_to_the_allowed_networks() {
    let greeting = serve("greeting", &[]);
    // 127.0.0.1 is allowed, and a name is allowed through its allowed address alone
    // (localhost's ::1 is not in the network).
    let proxy = socks(&["--socks-allow", "127.0.0.1/32"]);
    let through = |url: &str, target: &str| {
        let mut cmd = socketkit();
        cmd.args(["connect", "--proxy", url, target]);
        run(cmd, Vec::new(), DEADLINE)
    };
    let url = format!("socks5h://{}", proxy.addr());
    for target in [greeting.addr(), format!("localhost:{}", greeting.port())] {
        let out = through(&url, &target);
        assert_eq!(out.code(), 0, "{target}: {}", out.stderr);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "你好");
    }
    // Another address is refused with reply 2, and the proxy says so.
    let out = through(&url, &format!("127.0.0.2:{}", greeting.port()));
    fails_with(&out, 1, "not allowed by its rules (SOCKS5 reply 2)");
    proxy.wait_for_stderr(
        &[&format!(
            "127.0.0.2:{} is not an allowed destination",
            greeting.port()
        )],
        Duration::from_secs(5),
    );

    // Denied networks win: loopback denied, nothing local is reachable, the unspecified
    // address included (Linux connects 0.0.0.0 and :: to the machine itself: they went
    // through to the loopback-only server).
    let proxy = socks(&["--socks-deny", "127.0.0.0/8", "--socks-deny", "::1/128"]);
    let port = greeting.port();
    for scheme in ["socks5h", "socks5", "socks4"] {
        let url = format!("{scheme}://{}", proxy.addr());
        let mut targets = vec![greeting.addr(), format!("0.0.0.0:{port}")];
        // SOCKS4 carries IPv4 addresses only.
        if scheme != "socks4" {
            targets.push(format!("[::ffff:0.0.0.0]:{port}"));
            targets.push(format!("[::]:{port}"));
        }
        if scheme == "socks5h" {
            targets.push(format!("localhost:{port}"));
        }
        for target in targets {
            let out = through(&url, &target);
            assert_eq!(out.code(), 1, "{scheme} {target}: {}", out.stderr);
            assert!(
                out.stderr.contains("reply 2)") || out.stderr.contains("reply 91)"),
                "{scheme} {target}: {}",
                out.stderr
            );
        }
    }
}

#[test]
fn socks_destination_files_are_read_again_on_sighup() {
    let greeting = serve("greeting", &[]);
    let dir = tempfile::tempdir().expect("temp dir");
    let allowed = dir.path().join("allowed");
    std::fs::write(&allowed, "# where clients may go\n127.0.0.1/32\n").expect("write");
    let mut cmd = socketkit();
    cmd.args([
        "forward",
        "-l",
        "127.0.0.1:0",
        "--socks",
        "--socks-allow-file",
    ])
    .arg(&allowed);
    let proxy = Running::start(cmd, 1);
    let url = format!("socks5://{}", proxy.addr());
    let through = || {
        let mut cmd = socketkit();
        cmd.args(["connect", "--proxy", &url, &greeting.addr()]);
        run(cmd, Vec::new(), DEADLINE)
    };
    assert_eq!(through().code(), 0);
    // The allowed network moves away from the greeting server.
    std::fs::write(&allowed, "127.0.0.2/32\n").expect("write");
    proxy.signal(libc::SIGHUP);
    proxy.wait_for_stderr(
        &["socks destination rules reloaded: 1 allow, 0 deny"],
        Duration::from_secs(5),
    );
    fails_with(&through(), 1, "not allowed by its rules (SOCKS5 reply 2)");
    // A file that no longer reads keeps the rules in force.
    std::fs::write(&allowed, "127.0.0.1/33\n").expect("write");
    proxy.signal(libc::SIGHUP);
    proxy.wait_for_stderr(
        &["socks destination rules not reloaded, the old ones stay:"],
        Duration::from_secs(5),
    );
    fails_with(&through(), 1, "(SOCKS5 reply 2)");
}

#[test]
fn socks_usage_errors_exit_2() {
    for (args, said) in [
        (
            &["-l", "127.0.0.1:0", "--socks", "--to", "127.0.0.1:1"][..],
            "cannot be used with",
        ),
        (&["-l", "127.0.0.1:0"], "--to"),
        (
            &["-l", "udp:127.0.0.1:0", "--socks"],
            "--socks applies to stream forwarding only",
        ),
        (
            &["-l", "127.0.0.1:0", "--socks", "--tls-insecure"],
            "--tls-insecure",
        ),
        (
            &[
                "-l",
                "127.0.0.1:0",
                "--to",
                "127.0.0.1:1",
                "--socks-users",
                "/dev/null",
            ],
            "--socks-users applies to --socks only",
        ),
        (
            &[
                "-l",
                "127.0.0.1:0",
                "--to",
                "127.0.0.1:1",
                "--socks-deny",
                "10.0.0.0/8",
            ],
            "--socks-deny applies to --socks only",
        ),
        (
            &[
                "-l",
                "127.0.0.1:0",
                "--to",
                "127.0.0.1:1",
                "--socks-allow-file",
                "/dev/null",
            ],
            "--socks-allow-file applies to --socks only",
        ),
        (
            &[
                "-l",
                "127.0.0.1:0",
                "--socks",
                "--socks-allow",
                "10.0.0.0/33",
            ],
            "invalid network '10.0.0.0/33' for --socks-allow",
        ),
        // Options of --to targets, even with their default values written.
        (
            &["-l", "127.0.0.1:0", "--socks", "--balance", "round-robin"],
            "--balance applies to --to targets, and a --socks proxy's clients name their own",
        ),
        (
            &["-l", "127.0.0.1:0", "--socks", "--retry-after", "10s"],
            "--retry-after applies to --to targets",
        ),
        (
            &["-l", "127.0.0.1:0", "--socks", "--check-interval", "1s"],
            "--check-interval applies to --to targets",
        ),
    ] {
        let mut cmd = socketkit();
        cmd.arg("forward").args(args);
        let out = run(cmd, Vec::new(), DEADLINE);
        assert_eq!(out.code(), 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(said), "{args:?}: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    }
}
