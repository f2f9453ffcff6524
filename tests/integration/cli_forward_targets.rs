//! `socketkit forward` with several `--to` targets: clients spread in turn, a target that
//! cannot be reached passing its client on whole, `--balance first` with a primary that
//! comes back, least-conn and source balancing, the per-target metrics, and the usage
//! errors. Health checks and `--to-file` pools are in `cli_forward_pool.rs`, with these
//! helpers.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use crate::balancer::{sample, start_with_metrics};
use crate::support::net::{
    connect, connect_from, free_port, read_once, read_to_end, read_to_reset,
};
use crate::support::process::{DEADLINE, Running, run, socketkit};
use crate::support::{TestResult, wait_until};

pub(crate) fn start(args: &[&str]) -> Running {
    let mut cmd = socketkit();
    cmd.args(args);
    Running::start(cmd, 1)
}

/// A greeting server that answers `message`.
pub(crate) fn greeting(message: &str) -> Running {
    start(&[
        "serve",
        "greeting",
        "--message",
        message,
        "-l",
        "127.0.0.1:0",
    ])
}

/// `forward -l 127.0.0.1:0` with `options`, relaying to each of `targets`.
pub(crate) fn forward(options: &[&str], targets: &[&str]) -> Running {
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "127.0.0.1:0"]).args(options);
    for target in targets {
        cmd.args(["--to", target]);
    }
    Running::start(cmd, 1)
}

/// [`forward`] with `--metrics 127.0.0.1:0`, and the metrics' address.
pub(crate) fn forward_with_metrics(options: &[&str], targets: &[&str]) -> (Running, String) {
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
        .args(options);
    for target in targets {
        cmd.args(["--to", target]);
    }
    start_with_metrics(cmd)
}

/// The sample `name{target="tcp:TARGET"}` of a scrape of `metrics`.
pub(crate) fn per_target(metrics: &str, name: &str, target: &str) -> u64 {
    sample(metrics, name, &format!("target=\"tcp:{target}\""))
}

/// What a client of `relay` is answered.
pub(crate) fn answer(relay: &Running) -> String {
    String::from_utf8_lossy(&read_to_end(&mut connect(&relay.addr()))).into_owned()
}

pub(crate) fn dead_target() -> String {
    format!("127.0.0.1:{}", free_port())
}

#[test]
fn clients_go_to_each_target_in_turn() {
    let servers = [greeting("A"), greeting("B"), greeting("C")];
    let addrs = servers.each_ref().map(Running::addr);
    let relay = forward(&[], &addrs.each_ref().map(String::as_str));
    relay.assert_said(&format!(
        "(forward to tcp:{}, tcp:{}, tcp:{} in turn)",
        servers[0].addr(),
        servers[1].addr(),
        servers[2].addr()
    ));
    let answers: String = (0..9).map(|_| answer(&relay)).collect();
    assert_eq!(answers, "ABCABCABC");
}

/// One of four targets down: its turns are spread over the three up, 30 clients each of 90
/// (the one after it took its whole share: 45, 22, 22 — an outside audit).
#[test]
fn a_down_targets_turns_are_spread_over_those_up() {
    let servers = [greeting("A"), greeting("C"), greeting("D")];
    let dead = dead_target();
    let relay = forward(
        &["--retry-after", "60s"],
        &[
            &servers[0].addr(),
            &dead,
            &servers[1].addr(),
            &servers[2].addr(),
        ],
    );
    // The first client sent to the dead target marks it down (and is passed on).
    let answers: String = (0..90).map(|_| answer(&relay)).collect();
    for letter in ['A', 'C', 'D'] {
        let got = answers.matches(letter).count();
        assert!((27..=33).contains(&got), "{letter}: {got} of 90: {answers}");
    }
}

#[test]
fn a_target_named_twice_gets_two_turns_and_vv_logs_each_choice() {
    let (a, b) = (greeting("A"), greeting("B"));
    let relay = forward(&["-vv"], &[&a.addr(), &a.addr(), &b.addr()]);
    let answers: String = (0..6).map(|_| answer(&relay)).collect();
    assert_eq!(answers, "AABAAB");
    // Each choice is logged before its client is answered; stderr is read on a thread of
    // the test's own, so waited for.
    wait_until(
        Duration::from_secs(5),
        || format!("not six `relaying to` lines in:\n{}", relay.stderr()),
        || relay.stderr().matches("relaying to").count() == 6,
    );
    assert_eq!(
        relay
            .stderr()
            .matches(&format!("relaying to tcp:{}", b.addr()))
            .count(),
        2
    );
}

#[test]
fn a_target_that_cannot_be_reached_passes_its_client_on_whole() -> TestResult {
    // The first target fails at its TLS handshake (a plain server answers it), after the
    // client has sent its request: the echo behind it must get every byte.
    let plain = greeting("not TLS");
    let echo = start(&["serve", "echo", "-l", "127.0.0.1:0"]);
    let relay = forward(
        &["--balance", "first", "--tls-insecure"],
        &[&format!("tls:{}", plain.addr()), &echo.addr()],
    );
    let request: Vec<u8> = (0..200_000u32).flat_map(u32::to_le_bytes).collect();
    let mut client = connect(&relay.addr());
    let writer = {
        let mut client = client.try_clone()?;
        let request = request.clone();
        std::thread::spawn(move || {
            client.write_all(&request).expect("the request is sent");
            client.shutdown(Shutdown::Write).expect("half-close");
        })
    };
    let mut back = Vec::new();
    client.read_to_end(&mut back)?;
    writer.join().expect("writer");
    assert!(
        back == request,
        "{} bytes back of {}",
        back.len(),
        request.len()
    );
    relay.wait_for_stderr(
        &[
            &format!("cannot reach tls:{}", plain.addr()),
            "trying the next target",
        ],
        Duration::from_secs(5),
    );
    Ok(())
}

#[test]
fn when_no_target_can_be_reached_the_client_is_reset() {
    let (first, second) = (dead_target(), dead_target());
    let relay = forward(&[], &[&first, &second]);
    let mut client = connect(&relay.addr());
    assert!(read_to_reset(&mut client, "client").is_empty());
    relay.wait_for_stderr(
        &[
            &format!("cannot reach tcp:{first}: connection refused; trying the next target"),
            &format!("cannot reach tcp:{second}: connection refused; resetting the client"),
        ],
        Duration::from_secs(5),
    );
}

#[test]
fn a_primary_that_failed_is_passed_over_until_retry_after_then_taken_again() {
    let primary = dead_target();
    let backup = greeting("backup");
    let relay = forward(
        &["--balance", "first", "--retry-after", "3s"],
        &[&primary, &backup.addr()],
    );
    relay.assert_said(&format!(
        "(forward to tcp:{primary}, else tcp:{})",
        backup.addr()
    ));
    assert_eq!(answer(&relay), "backup");
    // stderr is collected by a thread of the test's: the line may lag the answer.
    relay.wait_for_stderr(&["cannot reach"], Duration::from_secs(5));
    // Marked down: the next client goes straight to the backup, with no second attempt.
    assert_eq!(answer(&relay), "backup");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        relay.stderr().matches("cannot reach").count(),
        1,
        "{}",
        relay.stderr()
    );

    let _primary = start(&["serve", "greeting", "--message", "primary", "-l", &primary]);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = answer(&relay);
        if got == "primary" {
            break;
        }
        assert_eq!(got, "backup");
        assert!(
            Instant::now() < deadline,
            "the primary was never taken again"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Up again, it takes every client.
    assert_eq!(answer(&relay), "primary");
}

#[test]
fn each_targets_connections_and_failures_are_counted() {
    let dead = dead_target();
    let live = greeting("live");
    let (relay, metrics) = forward_with_metrics(&["--retry-after", "0"], &[&dead, &live.addr()]);
    // Failures are not remembered (0): round robin sends every other client to the dead
    // target first.
    for _ in 0..4 {
        assert_eq!(answer(&relay), "live");
    }
    let (failures, connections) = (
        "socketkit_forward_target_failures_total",
        "socketkit_forward_target_connections_total",
    );
    assert_eq!(per_target(&metrics, failures, &dead), 2);
    assert_eq!(per_target(&metrics, connections, &live.addr()), 4);
    assert_eq!(per_target(&metrics, connections, &dead), 0);
}

/// `serve exec` running the shell `script` for each connection.
pub(crate) fn sh_server(script: &str) -> Running {
    start(&[
        "serve",
        "exec",
        "-l",
        "127.0.0.1:0",
        "--",
        "sh",
        "-c",
        script,
    ])
}

/// A server that answers each connection with a line naming it, then echoes.
pub(crate) fn named_echo(name: &str) -> Running {
    sh_server(&format!("echo {name}; exec cat"))
}

/// Connects to `relay` and reads the first line: the name of the target behind it.
pub(crate) fn open_through(relay: &Running) -> (TcpStream, String) {
    let mut stream = connect(&relay.addr());
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.last() != Some(&b'\n') {
        match read_once(&mut stream, &mut byte) {
            Ok(1) => line.push(byte[0]),
            other => panic!("no name line: {other:?} after {line:?}"),
        }
    }
    (stream, String::from_utf8_lossy(&line).trim().to_owned())
}

#[test]
fn least_conn_sends_a_client_to_the_target_holding_fewest() {
    let (a, b) = (named_echo("A"), named_echo("B"));
    let (relay, metrics) =
        forward_with_metrics(&["--balance", "least-conn"], &[&a.addr(), &b.addr()]);
    let active =
        |target: &Running| per_target(&metrics, "socketkit_forward_target_active", &target.addr());
    let (_first, first) = open_through(&relay);
    let (second_stream, second) = open_through(&relay);
    assert_eq!((first.as_str(), second.as_str()), ("A", "B"));
    assert_eq!((active(&a), active(&b)), (1, 1));
    // The second ends: B holds none, A one.
    second_stream.shutdown(Shutdown::Write).expect("half-close");
    let mut second_stream = second_stream;
    read_to_end(&mut second_stream);
    wait_until(
        Duration::from_secs(5),
        || format!("B still holds {}", active(&b)),
        || active(&b) == 0,
    );
    // Round robin would send the third to A; the fewest connections are B's.
    let (_third, third) = open_through(&relay);
    assert_eq!(third, "B");
    relay.assert_said(&format!(
        "(forward to tcp:{}, tcp:{} by fewest connections)",
        a.addr(),
        b.addr()
    ));
}

#[test]
fn source_balance_keeps_each_client_address_on_one_target_and_fails_over() {
    let servers = [greeting("A"), greeting("B"), greeting("C")];
    let addrs = servers.each_ref().map(Running::addr);
    let relay = forward(
        &["--balance", "source"],
        &addrs.each_ref().map(String::as_str),
    );
    let to = relay.addr().parse().expect("relay address");
    let answer_from = |source: &str| {
        String::from_utf8_lossy(&read_to_end(&mut connect_from(source, to))).into_owned()
    };
    // Sixteen client addresses, each three times: one target each, and all three used.
    let sources: Vec<String> = (1..=16).map(|host| format!("127.0.0.{host}")).collect();
    let mut chosen = Vec::new();
    for source in &sources {
        let first = answer_from(source);
        for _ in 0..2 {
            assert_eq!(answer_from(source), first, "{source} moved");
        }
        chosen.push(first);
    }
    for name in ["A", "B", "C"] {
        assert!(
            chosen.iter().any(|got| got == name),
            "no client on {name}: {chosen:?}"
        );
    }
    relay.assert_said(&format!(
        "(forward to tcp:{}, tcp:{}, tcp:{} by source address)",
        addrs[0], addrs[1], addrs[2]
    ));
    // A's clients go elsewhere while it is down; the others keep theirs.
    let [a, b, c] = servers;
    let on_a: Vec<usize> = (0..sources.len()).filter(|&i| chosen[i] == "A").collect();
    let a_addr = a.addr();
    drop(a);
    // A killed io_uring server's listener outlives the reaped process by a few
    // milliseconds (the kernel ends the ring's requests after), taking connections that it
    // then resets: wait until it refuses, as a client after that moment would find it.
    wait_until(
        Duration::from_secs(5),
        || format!("{a_addr} still takes connections"),
        || TcpStream::connect(&a_addr).is_err(),
    );
    // A killed ring's listener outlives the process for a moment (the kernel tears the
    // ring down after it), and clients it takes then are reset: wait until it refuses.
    for (index, source) in sources.iter().enumerate() {
        let got = answer_from(source);
        if on_a.contains(&index) {
            assert!(got == "B" || got == "C", "{source}: {got:?}");
        } else {
            assert_eq!(got, chosen[index], "{source} moved though its target is up");
        }
    }
    drop((b, c));
}

#[test]
fn options_for_several_targets_are_refused_where_they_cannot_apply() {
    let cases: [(&[&str], &str); 6] = [
        (
            &["--to", "127.0.0.1:9", "--balance", "first"],
            "error: --balance applies to several --to targets, and there is one",
        ),
        (
            &["--to", "127.0.0.1:9", "--retry-after", "1s"],
            "error: --retry-after applies to several --to targets, and there is one",
        ),
        (
            &[
                "--to",
                "127.0.0.1:9",
                "--to",
                "unix:/tmp/x.sock",
                "--proxy",
                "127.0.0.1:3128",
            ],
            "error: cannot forward to unix:/tmp/x.sock through a proxy",
        ),
        (
            &[
                "--to",
                "127.0.0.1:9",
                "--to",
                "127.0.0.1:10",
                "--balance",
                "fastest",
            ],
            "invalid value 'fastest' for '--balance <POLICY>'",
        ),
        (
            &["--to", "127.0.0.1:9", "--check-http", "/health"],
            "--check-interval",
        ),
        (
            &[
                "--to",
                "127.0.0.1:9",
                "--check-interval",
                "1s",
                "--check-http",
                "/health HTTP/1.0\r\nX-Injected: 1",
            ],
            "error: --check-http: invalid path",
        ),
    ];
    for (extra, wanted) in cases {
        let mut cmd = socketkit();
        cmd.args(["forward", "-l", "127.0.0.1:0"]).args(extra);
        let out = run(cmd, Vec::new(), DEADLINE);
        assert_eq!(out.code(), 2, "{extra:?}: {}", out.stderr);
        assert!(out.stderr.contains(wanted), "{extra:?}: {}", out.stderr);
    }
}
