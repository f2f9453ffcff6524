//! `forward` with Unix datagrams on either side (`-l udp:… --to unixgram:PATH`, the shape of
//! a syslog relay to /dev/log, and `-l unixgram:PATH --to udp:…`), against `socketkit serve
//! echo` and Rust sockets: every datagram is answered through the relay, each Unix client
//! at its own address; the relay's own files (its listener's, and the one each upstream
//! socket binds to be answered at) are gone when it stops.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;

use crate::support::net::IO_TIMEOUT;
use crate::support::process::{DEADLINE, Running, run, socketkit};

/// `socketkit serve echo -l ENDPOINT`.
fn echo(endpoint: &str) -> Running {
    let mut cmd = socketkit();
    cmd.args(["serve", "echo", "-l", endpoint]);
    Running::start(cmd, 1)
}

/// `socketkit forward -l LISTEN… --to TARGET EXTRA…`, its temporary directory `tmp` (where
/// it binds its upstream sockets' files).
fn forward(listen: &[&str], target: &str, tmp: &Path, extra: &[&str]) -> Running {
    let mut cmd = socketkit();
    cmd.arg("forward");
    for endpoint in listen {
        cmd.args(["-l", endpoint]);
    }
    cmd.args(["--to", target]).args(extra).env("TMPDIR", tmp);
    Running::start(cmd, listen.len())
}

/// A Unix datagram client bound at `path`, with the tests' timeout.
fn unix_client(path: &Path) -> UnixDatagram {
    let socket = UnixDatagram::bind(path).expect("bind the client");
    socket.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    socket
}

/// The names in `dir`.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read the directory")
        .map(|entry| {
            entry
                .expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

#[test]
fn udp_clients_reach_a_unixgram_target_and_get_its_answers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let relay_tmp = tempfile::tempdir().expect("temp dir");
    let target = format!("unixgram:{}", dir.path().join("echo.sock").display());
    let _echo = echo(&target);
    let mut relay = forward(&["udp:127.0.0.1:0"], &target, relay_tmp.path(), &[]);
    let relay_port = relay.port();
    let clients: Vec<std::net::UdpSocket> = (0..3)
        .map(|_| {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            socket.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
            socket
        })
        .collect();
    for round in 0..2 {
        for (n, client) in clients.iter().enumerate() {
            let data = format!("round {round} client {n}");
            client
                .send_to(data.as_bytes(), ("127.0.0.1", relay_port))
                .expect("send");
            let mut buf = [0u8; 256];
            let (len, from) = client.recv_from(&mut buf).expect("an answer");
            assert_eq!(from.port(), relay_port, "answered from the relay's port");
            assert_eq!(&buf[..len], data.as_bytes());
        }
    }
    // One upstream socket per client, each bound to a file of its own to be answered at.
    assert_eq!(
        names_in(relay_tmp.path()).len(),
        3,
        "{:?}",
        names_in(relay_tmp.path())
    );
    relay.signal(libc::SIGTERM);
    assert_eq!(relay.wait(DEADLINE).code(), Some(0), "{}", relay.stderr());
    assert!(
        names_in(relay_tmp.path()).is_empty(),
        "the upstream sockets' files outlive the relay: {:?}",
        names_in(relay_tmp.path())
    );
}

/// The names of the relay's upstream files cannot be taken first by another user of a
/// shared temporary directory: with `socketkit-PID-N.sock` names, live sockets at the next
/// 64 left the relay without a name for a new client (found by an outside audit).
#[test]
fn nobody_can_take_the_upstream_files_names_first() {
    let dir = tempfile::tempdir().expect("temp dir");
    let relay_tmp = tempfile::tempdir().expect("temp dir");
    let target = format!("unixgram:{}", dir.path().join("echo.sock").display());
    let _echo = echo(&target);
    let relay = forward(&["udp:127.0.0.1:0"], &target, relay_tmp.path(), &[]);
    let squatted: Vec<UnixDatagram> = (0..80)
        .map(|n| {
            let name = format!("socketkit-{}-{n}.sock", relay.pid());
            UnixDatagram::bind(relay_tmp.path().join(name)).expect("bind a squatter")
        })
        .collect();
    let client = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    client.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    client
        .send_to(b"through", ("127.0.0.1", relay.port()))
        .expect("send");
    let mut buf = [0u8; 64];
    let (len, _) = client
        .recv_from(&mut buf)
        .unwrap_or_else(|err| panic!("no answer ({err}): {}", relay.stderr()));
    assert_eq!(&buf[..len], b"through");
    drop(squatted);
}

#[test]
fn unixgram_clients_reach_a_udp_target_each_answered_at_its_own_address() {
    let dir = tempfile::tempdir().expect("temp dir");
    let echo = echo("udp:127.0.0.1:0");
    let listen = dir.path().join("relay.sock");
    let listen_endpoint = format!("unixgram:{}", listen.display());
    let mut relay = forward(
        &[&listen_endpoint],
        &echo.endpoints()[0],
        dir.path(),
        &["--unix-mode", "600"],
    );
    let mode = std::fs::metadata(&listen)
        .expect("the listener's file")
        .permissions();
    assert_eq!(mode.mode() & 0o777, 0o600, "--unix-mode");
    let clients: Vec<UnixDatagram> = (0..2)
        .map(|n| unix_client(&dir.path().join(format!("client-{n}.sock"))))
        .collect();
    for (n, client) in clients.iter().enumerate() {
        let data = format!("from client {n}");
        client.send_to(data.as_bytes(), &listen).expect("send");
        let mut buf = [0u8; 256];
        let (len, from) = client.recv_from(&mut buf).expect("an answer");
        assert_eq!(&buf[..len], data.as_bytes());
        assert_eq!(from.as_pathname(), Some(listen.as_path()), "from the relay");
    }
    // A client with no address is relayed too; it cannot be answered, and the relay goes on.
    let unnamed = UnixDatagram::unbound().expect("socket");
    unnamed.send_to(b"unanswerable", &listen).expect("send");
    let mut buf = [0u8; 64];
    clients[0].send_to(b"still here", &listen).expect("send");
    let (len, _) = clients[0].recv_from(&mut buf).expect("an answer");
    assert_eq!(&buf[..len], b"still here");
    relay.signal(libc::SIGTERM);
    assert_eq!(relay.wait(DEADLINE).code(), Some(0), "{}", relay.stderr());
    assert!(!listen.exists(), "the listener's file is removed");
}

/// A Unix datagram may be longer than any UDP one: 100,000 bytes go through the relay whole
/// both ways, the client's to the target and the target's answer back (which the relay
/// once cut to 65,535).
#[test]
fn a_long_unix_datagram_is_relayed_whole_both_ways() {
    let dir = tempfile::tempdir().expect("temp dir");
    let target = format!("unixgram:{}", dir.path().join("echo.sock").display());
    let _echo = echo(&target);
    let listen = dir.path().join("relay.sock");
    let relay = forward(
        &[&format!("unixgram:{}", listen.display())],
        &target,
        dir.path(),
        &[],
    );
    let client = unix_client(&dir.path().join("client.sock"));
    let data: Vec<u8> = (0..100_000u32).map(|n| (n % 251) as u8).collect();
    client.send_to(&data, &listen).expect("send");
    let mut buf = vec![0u8; 200_000];
    let (len, _) = client
        .recv_from(&mut buf)
        .unwrap_or_else(|err| panic!("no answer: {err}\n{}", relay.stderr()));
    assert_eq!(len, data.len(), "the answer's length");
    assert!(buf[..len] == data[..], "the answer's bytes");
}

/// A Unix datagram socket that does not read holds its sender back (UDP's receiver drops
/// instead): a client of `serve -l unixgram:` that never reads its replies, or a Unix
/// target of `forward` that stopped reading (a stalled syslog), must cost only its own
/// datagrams, not stop the one loop that serves everyone.
#[test]
fn a_unix_peer_that_does_not_read_holds_up_no_one_else() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = dir.path().join("srv.sock");
    let _echo = echo(&format!("unixgram:{}", server.display()));
    // More datagrams than a Unix socket's queue holds (net.unix.max_dgram_qlen, 10 here).
    let flood = |to: &dyn Fn(&[u8]) -> std::io::Result<usize>| {
        for n in 0..30 {
            let _ = to(format!("unread {n}").as_bytes());
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    let unread = UnixDatagram::bind(dir.path().join("unread.sock")).expect("bind");
    unread
        .set_write_timeout(Some(std::time::Duration::from_secs(1)))
        .expect("timeout");
    flood(&|data| unread.send_to(data, &server));
    let good = unix_client(&dir.path().join("good.sock"));
    good.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let mut buf = [0u8; 64];
    good.send_to(b"ping", &server).expect("send");
    let (len, _) = good
        .recv_from(&mut buf)
        .expect("another client is answered (serve)");
    assert_eq!(&buf[..len], b"ping");

    // forward: new clients go to the targets in turn, the first to the UDP echo, the
    // second to a Unix target that never reads.
    let udp_echo = echo("udp:127.0.0.1:0");
    let stuck_path = dir.path().join("stuck.sock");
    let _stuck = UnixDatagram::bind(&stuck_path).expect("bind the stuck target");
    let relay_tmp = tempfile::tempdir().expect("temp dir");
    let stuck = format!("unixgram:{}", stuck_path.display());
    let relay = forward(
        &["udp:127.0.0.1:0"],
        &udp_echo.endpoints()[0],
        relay_tmp.path(),
        &["--to", &stuck],
    );
    let relay_at = ("127.0.0.1", relay.port());
    let client = || {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        socket
    };
    let answered = client();
    let ask = |data: &[u8], what: &str| {
        answered.send_to(data, relay_at).expect("send");
        let mut got = [0u8; 64];
        let (len, _) = answered
            .recv_from(&mut got)
            .unwrap_or_else(|err| panic!("{what}: {err}\n{}", relay.stderr()));
        assert_eq!(&got[..len], data, "{what}");
    };
    ask(b"first", "the first client goes to the UDP echo");
    let to_stuck = client();
    flood(&|data| to_stuck.send_to(data, relay_at));
    ask(b"second", "the UDP target's client is still relayed");
}

/// A Unix target that restarts makes its socket anew at the same path (as a syslog daemon
/// does /dev/log): the client's next datagram reaches the new one, and is answered. With
/// `--max-per-source 1` too: the fresh upstream socket is the same client's, which keeps
/// its place (its old place refused it, and the datagram was dropped).
#[test]
fn a_unixgram_target_that_restarts_is_reached_again() {
    for extra in [&[][..], &["--max-per-source", "1"][..]] {
        let dir = tempfile::tempdir().expect("temp dir");
        let target = format!("unixgram:{}", dir.path().join("echo.sock").display());
        let mut first = echo(&target);
        let relay = forward(&["udp:127.0.0.1:0"], &target, dir.path(), extra);
        let client = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        client.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        let ask = |data: &[u8]| {
            client
                .send_to(data, ("127.0.0.1", relay.port()))
                .expect("send");
            let mut buf = [0u8; 64];
            let (len, _) = client.recv_from(&mut buf).unwrap_or_else(|err| {
                panic!(
                    "{extra:?}: no answer to {data:?}: {err}\n{}",
                    relay.stderr()
                )
            });
            assert_eq!(&buf[..len], data);
        };
        ask(b"before");
        first.signal(libc::SIGTERM);
        assert_eq!(first.wait(DEADLINE).code(), Some(0), "{}", first.stderr());
        let _second = echo(&target);
        ask(b"after the restart");
        ask(b"and after that");
    }
}

#[test]
fn unix_mode_needs_a_unixgram_listener_and_streams_stay_apart() {
    let cases: [(&[&str], &str); 3] = [
        (
            &[
                "forward",
                "-l",
                "udp:127.0.0.1:0",
                "--to",
                "unixgram:/tmp/x.sock",
            ],
            "--unix-mode",
        ),
        (
            &[
                "forward",
                "-l",
                "unixgram:/tmp/socketkit-test-no.sock",
                "--to",
                "127.0.0.1:9",
            ],
            "",
        ),
        (
            &[
                "forward",
                "-l",
                "unixgram:/tmp/socketkit-test-no.sock",
                "-l",
                "127.0.0.1:0",
                "--to",
                "udp:127.0.0.1:9",
            ],
            "",
        ),
    ];
    let expected = [
        "error: --unix-mode applies to Unix socket files, and no -l is a unixgram: endpoint\n",
        "error: a datagram listener relays to a udp: or unixgram: target, not tcp:127.0.0.1:9\n",
        "error: forward relays streams to streams and datagrams (udp:, unixgram:) to datagrams, \
         not tcp:127.0.0.1:0 beside a datagram listener\n",
    ];
    for ((args, option), want) in cases.iter().zip(expected) {
        let mut cmd = socketkit();
        cmd.args(*args);
        if !option.is_empty() {
            cmd.args([*option, "600"]);
        }
        let out = run(cmd, Vec::new(), DEADLINE);
        assert_eq!(out.code(), 2, "{args:?}: {}", out.stderr);
        assert_eq!(out.stderr, want, "{args:?}");
    }
}

/// A `unixgram:` target that is not there (a log daemon restarting) fails the datagrams
/// sent to it, as a UDP target's refusals do: counted, and the target down. They were
/// dropped with `failures_total` at 0 and `up` at 1 (an outside audit).
#[test]
fn a_missing_unixgram_target_is_counted_as_failing() {
    use crate::balancer::{sample, start_with_metrics};
    let dir = tempfile::tempdir().expect("temp dir");
    let target = format!("unixgram:{}", dir.path().join("gone.sock").display());
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "udp:127.0.0.1:0", "--to", &target])
        .args(["--metrics", "127.0.0.1:0"])
        .env("TMPDIR", dir.path());
    let (relay, metrics) = start_with_metrics(cmd);
    let labels = format!("target=\"{target}\"");
    for _ in 0..3 {
        let client = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        client
            .send_to(b"lost", ("127.0.0.1", relay.port()))
            .expect("send");
    }
    crate::support::wait_until(
        IO_TIMEOUT,
        || format!("no failure counted:\n{}", relay.stderr()),
        || sample(&metrics, "socketkit_forward_target_failures_total", &labels) >= 3,
    );
    assert_eq!(sample(&metrics, "socketkit_forward_target_up", &labels), 0);
}
