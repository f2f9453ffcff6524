//! Scripts moving from OpenBSD nc, ncat and socat (an outside audit of such migrations):
//! ncat's `--wait` on a stream, one-port ranges and port lists for `-z`, socat's address
//! words, and the hints for flags socketkit spells differently or does not have.

use std::net::{TcpListener, UdpSocket};
use std::time::Duration;

use crate::support::process::{DEADLINE, Output, run, socketkit};

fn run_args(args: &[&str]) -> Output {
    let mut cmd = socketkit();
    cmd.args(args);
    run(cmd, Vec::new(), DEADLINE)
}

/// Runs `args` and checks it is a usage error: exit 2, one `error:` line holding `words`.
fn usage_error(args: &[&str], words: &str) {
    let out = run_args(args);
    assert_eq!(out.code(), 2, "{args:?}: {}", out.stderr);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: {}", out.stderr);
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(words),
        "{args:?}: want {words:?} in {}",
        out.stderr
    );
}

/// A port of 127.0.0.1 that takes connections while the listener lives, and one that
/// refuses them.
fn open_and_closed() -> (TcpListener, u16, u16) {
    let open = TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed_port = closed.local_addr().expect("addr").port();
    drop(closed);
    let open_port = open.local_addr().expect("addr").port();
    (open, open_port, closed_port)
}

#[test]
fn nc_n_takes_numeric_addresses_and_refuses_names() {
    let (_open, open, _) = open_and_closed();
    let port = open.to_string();
    // The commonest nc line of all, as it is.
    let out = run_args(&["connect", "-nvz", "127.0.0.1", &port]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let out = run_args(&["connect", "--nodns", "-z", &format!("127.0.0.1:{port}")]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let name = "-n takes numeric addresses only, and 'localhost' is a name to look up";
    usage_error(&["connect", "-n", "localhost", &port], name);
    usage_error(&["connect", "-nu", "localhost", &port], name);
    usage_error(&["listen", "-n", "localhost", "0"], name);
    // The proxy's name too: -n looks up nothing (it was resolved; an outside audit).
    usage_error(
        &[
            "connect",
            "-n",
            "--proxy",
            "socks5://localhost:1080",
            "127.0.0.1",
            &port,
        ],
        name,
    );
}

#[test]
fn ncat_wait_on_a_stream_is_a_usage_error_naming_the_timeout() {
    let (_open, _, closed) = open_and_closed();
    let port = closed.to_string();
    let timeout = "a connect timeout (ncat's --wait, nc's -w) is -w/--timeout here";
    usage_error(&["connect", "--wait", "2", "127.0.0.1", &port], timeout);
    usage_error(
        &["connect", "--wait=2s", &format!("tls:127.0.0.1:{port}")],
        "--wait is the UDP and unixgram reply wait, not for tls: endpoints",
    );
    usage_error(
        &["listen", "--wait", "1s", "127.0.0.1", "0"],
        "--wait is the UDP and unixgram reply wait, not for tcp: endpoints",
    );
}

#[test]
fn wait_still_bounds_a_udp_connect_after_stdin_ends() {
    let peer = UdpSocket::bind("127.0.0.1:0").expect("bind");
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let port = peer.local_addr().expect("addr").port().to_string();
    let mut cmd = socketkit();
    cmd.args(["connect", "-u", "--wait", "100ms", "127.0.0.1", &port]);
    let out = run(cmd, b"ping".to_vec(), DEADLINE);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let mut buf = [0u8; 16];
    let (n, _) = peer.recv_from(&mut buf).expect("the datagram");
    assert_eq!(&buf[..n], b"ping");
}

/// nc's `-u -w N`: a datagram has no connect to bound, and `-w` is how long replies are
/// waited for after the input ends (it was dropped: a reply 1.5 s late was lost, exit 0,
/// under `-w 5`). An outside audit of nc habits.
#[test]
fn w_on_a_udp_connect_is_the_reply_wait() {
    let peer = UdpSocket::bind("127.0.0.1:0").expect("bind");
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let port = peer.local_addr().expect("addr").port().to_string();
    let answerer = std::thread::spawn(move || {
        let mut buf = [0u8; 16];
        let (_, from) = peer.recv_from(&mut buf).expect("the question");
        std::thread::sleep(Duration::from_millis(1500));
        peer.send_to(b"answer\n", from).expect("the answer");
    });
    let mut cmd = socketkit();
    cmd.args(["connect", "-u", "-w", "4", "127.0.0.1", &port]);
    let out = run(cmd, b"question\n".to_vec(), DEADLINE);
    answerer.join().expect("the answerer");
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout, b"answer\n", "{}", out.stderr);
}

#[test]
fn a_one_port_range_is_a_range() {
    let (_open, open, closed) = open_and_closed();
    let out = run_args(&["connect", "-z", "127.0.0.1", &format!("{open}-{open}")]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("tcp:127.0.0.1:{open}\n")
    );
    let range = format!("{closed}-{closed}");
    let out = run_args(&["connect", "-z", "127.0.0.1", &range]);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert_eq!(
        out.stderr,
        format!(
            "error: cannot connect to tcp:127.0.0.1:{range}: no port took a connection (1 \
             connection refused)\n"
        )
    );
    let range = format!("{open}-{open}");
    usage_error(
        &["connect", "127.0.0.1", &range],
        "a port range (LOW-HIGH) is for -z",
    );
}

#[test]
fn several_ports_after_the_host_are_probed_in_the_order_written() {
    let (_open, open, closed) = open_and_closed();
    let (_second, second, _) = open_and_closed();
    let words = [second.to_string(), closed.to_string(), open.to_string()];
    let mut args = vec!["connect", "-zv", "127.0.0.1"];
    args.extend(words.iter().map(String::as_str));
    let out = run_args(&args);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("tcp:127.0.0.1:{second}\ntcp:127.0.0.1:{open}\n")
    );
    let refused = format!("cannot connect to tcp:127.0.0.1:{closed}: connection refused");
    assert!(out.stderr.contains(&refused), "{}", out.stderr);
    // None open: one line naming the list.
    let list = [closed.to_string(), format!("{closed}-{closed}")];
    let out = run_args(&["connect", "-z", "127.0.0.1", &list[0], &list[1]]);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert_eq!(
        out.stderr,
        format!(
            "error: cannot connect to tcp:127.0.0.1:{closed},{closed}-{closed}: no port took a \
             connection (2 connection refused)\n"
        )
    );
    let two = [open.to_string(), second.to_string()];
    usage_error(
        &["connect", "127.0.0.1", &two[0], &two[1]],
        "several ports are for -z",
    );
}

#[test]
fn socat_address_words_name_the_socketkit_form() {
    for (endpoint, words) in [
        (
            "tcp4:127.0.0.1:9",
            "unknown scheme 'tcp4' (socat's; here tcp:HOST:PORT, with -4",
        ),
        (
            "tcp6:[::1]:9",
            "unknown scheme 'tcp6' (socat's; here tcp:HOST:PORT",
        ),
        (
            "udp4:127.0.0.1:9",
            "unknown scheme 'udp4' (socat's; here udp:HOST:PORT",
        ),
        ("udp6:[::1]:9", "here udp:HOST:PORT"),
        ("TCP4:127.0.0.1:9", "unknown scheme 'TCP4' (socat's"),
        (
            "UNIX-CONNECT:/tmp/x.sock",
            "unknown scheme 'UNIX-CONNECT' (socat's; here unix:PATH)",
        ),
        ("UNIX-LISTEN:/tmp/x.sock", "here unix:PATH, given to listen"),
        (
            "TCP-LISTEN:8080",
            "here :PORT or HOST:PORT, given to listen",
        ),
        ("OPENSSL:127.0.0.1:443", "here tls:HOST:PORT"),
        ("STDIO", "socat's 'STDIO'"),
        (
            "TCP:127.0.0.1:9",
            "unknown scheme 'TCP' (schemes are lower case: tcp:HOST:PORT)",
        ),
        ("UDP:127.0.0.1:9", "(schemes are lower case: udp:HOST:PORT)"),
        // Two schemes keep their own message.
        ("tls:tcp:127.0.0.1:9", "an endpoint takes one scheme"),
    ] {
        usage_error(&["connect", endpoint], words);
    }
    usage_error(&["listen", "TCP-LISTEN:0"], "given to listen");
    // With -u, the word is still named (it was taken for a host before `udp:`).
    usage_error(
        &["connect", "-u", "UDP4:127.0.0.1:9"],
        "unknown scheme 'UDP4'",
    );
    usage_error(
        &["listen", "-u", "udp4:127.0.0.1:0"],
        "unknown scheme 'udp4'",
    );
    usage_error(
        &["forward", "-l", "127.0.0.1:0", "--to", "TCP4:127.0.0.1:9"],
        "socat's",
    );
}

#[test]
fn ncat_and_clustered_nc_flags_get_a_hint() {
    for (args, words) in [
        (&["connect", "-vq1", "127.0.0.1", "9"][..], "-q SECONDS"),
        (&["connect", "-uq1", "127.0.0.1", "9"], "-q SECONDS"),
        (&["connect", "-Cq", "1", "127.0.0.1", "9"], "-q SECONDS"),
        (&["connect", "-i", "2", "127.0.0.1", "9"], "--idle-timeout"),
        (
            &["listen", "-k", "--max-conns", "5", "0"],
            "--max-connections N",
        ),
        (&["listen", "-w", "3", "0"], "-w on listen"),
        (&["connect", "--telnet", "127.0.0.1", "9"], "--telnet"),
        (&["listen", "--broker", "0"], "no broker mode"),
        (&["listen", "--chat", "0"], "no broker mode"),
        (&["serve", "--broker"], "no broker mode"),
    ] {
        usage_error(args, words);
    }
    let out = run_args(&["connect", "--telnet", "127.0.0.1", "9"]);
    assert!(!out.stderr.contains("did you mean"), "{}", out.stderr);
}

#[test]
fn dash_w_help_says_it_bounds_the_connect_only() {
    let out = run_args(&["connect", "--help"]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let help = String::from_utf8_lossy(&out.stdout).replace('\n', " ");
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        help.contains("bounds the connect only") && help.contains("that is --idle-timeout"),
        "{help}"
    );
}

/// OpenBSD nc's `-x HOST:PORT` is a SOCKS proxy; socketkit's `-x` is ncat's hex dump. Taken
/// as a file, `nc -x proxy:1080 host port` (ssh's `ProxyCommand`) connected past the proxy
/// and exited 0 (an outside audit): refused with the socketkit way. A file of such a name
/// is still written with `./`.
#[test]
fn ncs_proxy_form_of_x_is_refused_with_the_proxy_option() {
    let (_open, open, _) = open_and_closed();
    let port = open.to_string();
    for proxy in ["127.0.0.1:1080", "[::1]:1080", "proxy.example:1080"] {
        usage_error(
            &["connect", "-x", proxy, "127.0.0.1", &port],
            &format!("for the proxy give --proxy socks5://{proxy}"),
        );
    }
    // An address alone is nc's proxy on its default port, not a file to write.
    for (alone, proxy) in [("127.0.0.1", "127.0.0.1:1080"), ("::1", "[::1]:1080")] {
        usage_error(
            &["connect", "-x", alone, "127.0.0.1", &port],
            &format!(
                "for the proxy give --proxy socks5://{proxy} (a file of that name: -x ./{alone})"
            ),
        );
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("127.0.0.1:1080");
    // A peer that closes at once, so that the run ends.
    let peer = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = peer.local_addr().expect("addr").port().to_string();
    let closer = std::thread::spawn(move || drop(peer.accept()));
    let out = run_args(&[
        "connect",
        "-x",
        file.to_str().expect("utf-8"),
        "127.0.0.1",
        &port,
    ]);
    let _ = closer.join();
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(file.exists(), "the dump is written to a file of that name");
}
