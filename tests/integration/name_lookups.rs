//! Names looked up by a resolver of the test's own (`support::resolver`): `forward`'s
//! datagram target that does not resolve is an error before the readiness line, and a
//! reloaded one whose lookup hangs holds up none of the datagrams relayed meanwhile; a
//! proxy's name that is slow to resolve leaves `-w` whole for the proxy's answer.

use std::io::Write;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use crate::support::process::{DEADLINE, Running, run, socketkit};
use crate::support::resolver::{SilentResolver, with_resolver, with_slow_hosts};

/// A UDP server on 127.0.0.1 that answers every datagram with `name` (for as long as
/// datagrams keep coming within 10 s); its port.
fn answering(name: &'static str) -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let port = socket.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok((_, peer)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(name.as_bytes(), peer);
        }
    });
    port
}

/// A client whose every answer must come within `within`.
fn client(within: Duration) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.set_read_timeout(Some(within)).expect("timeout");
    socket
}

/// Who answers `client` through the relay on `port`.
fn who(client: &UdpSocket, port: u16) -> String {
    client.send_to(b"who", ("127.0.0.1", port)).expect("send");
    let mut buf = [0u8; 16];
    match client.recv_from(&mut buf) {
        Ok((n, _)) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(err) => panic!("no answer through the relay: {err}"),
    }
}

#[test]
fn a_datagram_target_that_does_not_resolve_is_an_error_before_the_readiness_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Nothing listens at the nameserver's address: the lookup fails at once.
    let args = ["forward", "-l", "udp:127.0.0.1:0", "--to", "udp:nx.test:9"];
    let Some(cmd) = with_resolver(dir.path(), Ipv4Addr::new(127, 45, 0, 2), 1, &args) else {
        return;
    };
    let out = run(cmd, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("error: cannot resolve nx.test"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("listening on"), "{}", out.stderr);
}

#[test]
fn a_reloaded_name_whose_lookup_hangs_holds_up_no_datagram() {
    let dir = tempfile::tempdir().expect("temp dir");
    let nameserver = Ipv4Addr::new(127, 45, 0, 1);
    let _resolver = SilentResolver::bind(nameserver);
    let port = answering("A");
    let file = dir.path().join("targets");
    std::fs::write(&file, format!("udp:127.0.0.1:{port}\n")).expect("write");
    let file_arg = file.to_str().expect("UTF-8 path");
    let args = ["forward", "-l", "udp:127.0.0.1:0", "--to-file", file_arg];
    // Each lookup of the new name lasts the resolver's timeout, 3 s.
    let Some(cmd) = with_resolver(dir.path(), nameserver, 3, &args) else {
        return;
    };
    let relay = Running::start(cmd, 1);
    let within = Duration::from_millis(1500);
    let first = client(within);
    assert_eq!(who(&first, relay.port()), "A");

    std::fs::write(&file, format!("udp:slow.test:{port}\n")).expect("rewrite");
    relay.signal(libc::SIGHUP);
    relay.wait_for_stderr(&["targets reloaded from"], Duration::from_secs(10));
    // While the name is looked up, the relay goes on: the client already relayed, and a
    // new one (to the old target, the new one not known yet), answered at once.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        assert_eq!(who(&first, relay.port()), "A");
        assert_eq!(who(&client(within), relay.port()), "A");
        std::thread::sleep(Duration::from_millis(100));
    }
    relay.wait_for_stderr(
        &["new clients go to the targets before the reload"],
        Duration::from_secs(10),
    );
    assert_eq!(who(&client(within), relay.port()), "A");
}

#[test]
fn a_proxys_slow_name_leaves_w_for_the_proxys_answer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let nameserver = Ipv4Addr::new(127, 45, 0, 3);
    let _resolver = SilentResolver::bind(nameserver);
    let target = TcpListener::bind("127.0.0.1:0").expect("bind");
    let target_port = target.local_addr().expect("addr").port().to_string();
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = target.accept() {
            let _ = stream.write_all(b"through the proxy\n");
        }
    });
    let mut proxy = socketkit();
    proxy.args(["forward", "-l", "127.0.0.1:0", "--socks"]);
    let proxy = Running::start(proxy, 1);
    // The proxy's name resolves from the hosts file once the silent resolver's 2 s are
    // over: more than the 1 s `-w` gives the proxy to answer, which it does at once.
    let via = format!("socks5h://proxy.test:{}", proxy.port());
    let args = [
        "connect",
        "-w",
        "1s",
        "--proxy",
        &via,
        "127.0.0.1",
        &target_port,
    ];
    let hosts = "127.0.0.1 proxy.test localhost\n";
    let Some(cmd) = with_slow_hosts(dir.path(), nameserver, 2, hosts, &args) else {
        return;
    };
    let out = run(cmd, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout, b"through the proxy\n");
}

#[test]
fn listen_with_a_family_and_a_name_that_does_not_resolve_says_so_as_everywhere() {
    for family in ["-4", "-6"] {
        let dir = tempfile::tempdir().expect("temp dir");
        let args = ["listen", family, "nx.test", "0"];
        // Nothing listens at the nameserver's address: the lookup fails at once.
        let Some(cmd) = with_resolver(dir.path(), Ipv4Addr::new(127, 45, 0, 4), 1, &args) else {
            return;
        };
        let out = run(cmd, Vec::new(), DEADLINE);
        assert_eq!(out.code(), 1, "{family}: {}", out.stderr);
        assert!(
            out.stderr
                .starts_with("error: cannot resolve nx.test: temporary failure in name resolution"),
            "{family}: {}",
            out.stderr
        );
    }
}

/// The threads of process `pid`.
fn threads(pid: i32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|count| count.trim().parse().ok())
        .expect("a Threads line")
}

#[test]
fn clients_asking_for_one_slow_name_share_its_lookup() {
    let dir = tempfile::tempdir().expect("temp dir");
    let nameserver = Ipv4Addr::new(127, 45, 0, 5);
    let _resolver = SilentResolver::bind(nameserver);
    let args = ["forward", "-l", "127.0.0.1:0", "--to", "slow.test:9"];
    // Each lookup lasts the resolver's timeout, 3 s, and fails.
    let Some(cmd) = with_resolver(dir.path(), nameserver, 3, &args) else {
        return;
    };
    let relay = Running::start(cmd, 1);
    let before = threads(relay.pid());
    let clients: Vec<std::net::TcpStream> = (0..20)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", relay.port())).expect("connect"))
        .collect();
    // Twenty clients, one name: one lookup, on one thread (one each filled the blocking
    // pool, and past 512 no name resolved for anyone).
    let started = Instant::now();
    let mut most = before;
    while started.elapsed() < Duration::from_secs(1) {
        most = most.max(threads(relay.pid()));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        most <= before + 2,
        "{before} threads before the clients, {most} during their lookups"
    );
    relay.wait_for_stderr(&["cannot resolve slow.test"], Duration::from_secs(10));
    drop(clients);
}

/// A list reloaded while the names of the one before are still looked up: that one, once
/// resolved, is set aside, neither put in force nor given metric series (its targets left
/// with the second reload, and nothing would remove their series later).
#[test]
fn a_list_replaced_while_its_names_are_looked_up_is_set_aside() {
    let dir = tempfile::tempdir().expect("temp dir");
    let nameserver = Ipv4Addr::new(127, 45, 0, 6);
    let _resolver = SilentResolver::bind(nameserver);
    let (one, two, three) = (answering("one"), answering("two"), answering("three"));
    let file = dir.path().join("targets");
    std::fs::write(&file, format!("udp:127.0.0.1:{one}\n")).expect("write");
    let file_arg = file.to_str().expect("UTF-8 path");
    let args = [
        "forward",
        "-vv",
        "-l",
        "udp:127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--to-file",
        file_arg,
    ];
    // `slow.test` is in the hosts file, asked after the silent resolver's 2 s.
    let hosts = "127.0.0.1 slow.test localhost\n";
    let Some(cmd) = with_slow_hosts(dir.path(), nameserver, 2, hosts, &args) else {
        return;
    };
    let (relay, metrics) = crate::balancer::start_with_metrics(cmd);
    let within = Duration::from_secs(5);
    assert_eq!(who(&client(within), relay.port()), "one");

    std::fs::write(&file, format!("udp:slow.test:{two}\n")).expect("rewrite");
    relay.signal(libc::SIGHUP);
    relay.wait_for_stderr(&["added udp:slow.test"], Duration::from_secs(10));
    // This client's datagram has the new names looked up; it goes to the old target.
    assert_eq!(who(&client(within), relay.port()), "one");
    std::fs::write(&file, format!("udp:127.0.0.1:{three}\n")).expect("rewrite");
    relay.signal(libc::SIGHUP);
    relay.wait_for_stderr(&["added udp:127.0.0.1:"], Duration::from_secs(10));
    relay.wait_for_stderr(&["was set aside"], Duration::from_secs(10));
    let scrape = crate::support::net::http_get(&metrics, "/metrics").1;
    assert!(!scrape.contains("slow.test"), "{scrape}");
    assert_eq!(who(&client(within), relay.port()), "three");
}
