//! A name with two addresses, the first of which drops the handshake (a firewall that drops,
//! an IPv6 route that goes nowhere): `connect` and `forward` race the addresses (Happy
//! Eyeballs, RFC 8305) and are through on the second a quarter of a second later, where
//! trying them in turn waited out the first attempt (`-w`, or the kernel's SYN retries of
//! about two minutes). The name comes from a hosts file of the test's own, bind-mounted over
//! `/etc/hosts` in a mount namespace of the command's own (`unshare --mount`), so the
//! machine's file is never touched.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use socketkit::socket::{Family, Socket, Type};

use crate::access_control::as_root;
use crate::support::process::{Running, command, run};

/// What the good address's server says to each client.
const GREETING: &[u8] = b"through the second address\n";

/// `[::1]:P`, whose accept queue is full (backlog 0, one connection never accepted), so
/// that the kernel drops every further SYN; and `127.0.0.1:P`, the same port, a server that
/// greets each client. Both live as long as the returned values.
struct TwoAddresses {
    _hole: Socket,
    _filler: TcpStream,
    _server: std::thread::JoinHandle<()>,
    port: u16,
}

fn two_addresses() -> TwoAddresses {
    let hole = Socket::new(Family::Inet6, Type::Stream).expect("an IPv6 socket");
    hole.bind(("::1", 0)).expect("bind [::1]:0");
    hole.listen(0).expect("listen");
    let port = hole.local_addr().expect("addr").port().expect("a port");
    let filler = TcpStream::connect(SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], port)))
        .expect("the connection that fills the queue");
    let good = TcpListener::bind(("127.0.0.1", port)).expect("bind 127.0.0.1 on the same port");
    let server = std::thread::spawn(move || {
        // Each client of the test, then the listener goes with the test's end.
        for stream in good.incoming().take(2) {
            let Ok(mut stream) = stream else { return };
            let _ = stream.write_all(GREETING);
        }
    });
    TwoAddresses {
        _hole: hole,
        _filler: filler,
        _server: server,
        port,
    }
}

/// `socketkit ARGS` with `raced.test` naming `::1` first, then `127.0.0.1` (the order
/// getaddrinfo sorts them in, RFC 6724), in a mount namespace of its own; `None`, with the
/// reason printed, where that needs privileges the tests do not have.
fn with_two_address_name(dir: &Path, args: &[&str]) -> Option<std::process::Command> {
    if !as_root() {
        return None;
    }
    let hosts = dir.join("hosts");
    std::fs::write(&hosts, "::1 raced.test\n127.0.0.1 raced.test\n").expect("write hosts");
    let mut cmd = command(Path::new("unshare"));
    cmd.args([
        "--mount",
        "sh",
        "-c",
        r#"mount --bind "$0" /etc/hosts && exec "$@""#,
    ])
    .arg(&hosts)
    .arg(env!("CARGO_BIN_EXE_socketkit"))
    .args(args);
    Some(cmd)
}

#[test]
fn connect_is_through_on_the_second_address_without_waiting_out_the_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addresses = two_addresses();
    let target = format!("raced.test:{}", addresses.port);
    let Some(cmd) = with_two_address_name(dir.path(), &["connect", "-v", "-w", "20", &target])
    else {
        return;
    };
    let started = Instant::now();
    let out = run(cmd, Vec::new(), Duration::from_secs(30));
    let took = started.elapsed();
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout, GREETING, "{}", out.stderr);
    assert!(
        out.stderr.contains("connected to tcp:127.0.0.1:"),
        "{}",
        out.stderr
    );
    // The first address's attempt was made (the delay was paid) and not waited out.
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[test]
fn forward_is_through_on_the_second_address_without_waiting_out_the_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addresses = two_addresses();
    let target = format!("raced.test:{}", addresses.port);
    let Some(cmd) = with_two_address_name(
        dir.path(),
        &["forward", "-l", "127.0.0.1:0", "--to", &target],
    ) else {
        return;
    };
    let forward = Running::start(cmd, 1);
    let started = Instant::now();
    let mut client = TcpStream::connect(forward.addr()).expect("connect to the relay");
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut got = Vec::new();
    let read = client.read_to_end(&mut got);
    let took = started.elapsed();
    assert!(read.is_ok(), "{read:?}; relay: {}", forward.stderr());
    assert_eq!(got, GREETING, "relay: {}", forward.stderr());
    assert!(took < Duration::from_secs(5), "{took:?}");
}

/// `forward --socks` with destination rules resolves the name a client asks for and races
/// the addresses the rules admit: with rules it tried them in turn, and a first address
/// that drops the handshake failed the client at `--timeout` (the review of the race).
#[test]
fn a_socks_proxy_with_rules_races_the_admitted_addresses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addresses = two_addresses();
    let Some(cmd) = with_two_address_name(
        dir.path(),
        &[
            "forward",
            "--socks",
            "-l",
            "127.0.0.1:0",
            "--socks-deny",
            "10.0.0.0/8",
        ],
    ) else {
        return;
    };
    let proxy = Running::start(cmd, 1);
    let mut client = crate::support::process::socketkit();
    client.args([
        "connect",
        "--proxy",
        &format!("socks5h://127.0.0.1:{}", proxy.port()),
        &format!("raced.test:{}", addresses.port),
    ]);
    let started = Instant::now();
    let out = run(client, Vec::new(), Duration::from_secs(30));
    assert_eq!(out.code(), 0, "{}; proxy: {}", out.stderr, proxy.stderr());
    assert_eq!(out.stdout, GREETING);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
