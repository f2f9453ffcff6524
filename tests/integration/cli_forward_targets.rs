//! `socketkit forward` with several `--to` targets: clients spread in turn, a target that
//! cannot be reached passing its client on whole, `--balance first` with a primary that
//! comes back, the per-target metrics, and the usage errors.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use crate::balancer::{sample, start_with_metrics};
use crate::support::net::{
    connect, connect_from, free_port, read_once, read_to_end, read_to_reset,
};
use crate::support::process::{DEADLINE, Running, run, socketkit};
use crate::support::{TestResult, wait_until};

fn start(args: &[&str]) -> Running {
    let mut cmd = socketkit();
    cmd.args(args);
    Running::start(cmd, 1)
}

/// A greeting server that answers `message`.
fn greeting(message: &str) -> Running {
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
fn forward(options: &[&str], targets: &[&str]) -> Running {
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "127.0.0.1:0"]).args(options);
    for target in targets {
        cmd.args(["--to", target]);
    }
    Running::start(cmd, 1)
}

/// [`forward`] with `--metrics 127.0.0.1:0`, and the metrics' address.
fn forward_with_metrics(options: &[&str], targets: &[&str]) -> (Running, String) {
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
        .args(options);
    for target in targets {
        cmd.args(["--to", target]);
    }
    start_with_metrics(cmd)
}

/// The sample `name{target="tcp:TARGET"}` of a scrape of `metrics`.
fn per_target(metrics: &str, name: &str, target: &str) -> u64 {
    sample(metrics, name, &format!("target=\"tcp:{target}\""))
}

/// What a client of `relay` is answered.
fn answer(relay: &Running) -> String {
    String::from_utf8_lossy(&read_to_end(&mut connect(&relay.addr()))).into_owned()
}

fn dead_target() -> String {
    format!("127.0.0.1:{}", free_port())
}

#[test]
fn clients_go_to_each_target_in_turn() {
    let servers = [greeting("A"), greeting("B"), greeting("C")];
    let addrs = servers.each_ref().map(Running::addr);
    let relay = forward(&[], &addrs.each_ref().map(String::as_str));
    assert!(
        relay.stderr().contains(&format!(
            "(forward to tcp:{}, tcp:{}, tcp:{} in turn)",
            servers[0].addr(),
            servers[1].addr(),
            servers[2].addr()
        )),
        "{}",
        relay.stderr()
    );
    let answers: String = (0..9).map(|_| answer(&relay)).collect();
    assert_eq!(answers, "ABCABCABC");
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
    assert!(
        relay.stderr().contains(&format!(
            "(forward to tcp:{primary}, else tcp:{})",
            backup.addr()
        )),
        "{}",
        relay.stderr()
    );
    assert_eq!(answer(&relay), "backup");
    // Marked down: the next client goes straight to the backup, with no second attempt.
    assert_eq!(answer(&relay), "backup");
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

#[test]
fn health_checks_take_a_dead_target_out_before_any_client_and_back_when_it_returns() {
    let primary = dead_target();
    let backup = greeting("backup");
    let (relay, metrics) = forward_with_metrics(
        &[
            "--balance",
            "first",
            "--check-interval",
            "200ms",
            "--retry-after",
            "1h",
        ],
        &[&primary, &backup.addr()],
    );
    let up = |target: &str| per_target(&metrics, "socketkit_forward_target_up", target);
    // The first round runs at once.
    relay.wait_for_stderr(
        &[&format!(
            "health check: tcp:{primary} is down: connection refused"
        )],
        Duration::from_secs(5),
    );
    assert_eq!((up(&primary), up(&backup.addr())), (0, 1));
    // Checked down: no client tries it.
    assert_eq!(answer(&relay), "backup");
    assert!(
        !relay.stderr().contains("cannot reach"),
        "{}",
        relay.stderr()
    );

    // Back: the next check takes it again, an hour of --retry-after notwithstanding.
    let _primary = start(&["serve", "greeting", "--message", "primary", "-l", &primary]);
    relay.wait_for_stderr(
        &[&format!("health check: tcp:{primary} is up")],
        Duration::from_secs(5),
    );
    assert_eq!(answer(&relay), "primary");
    assert_eq!(up(&primary), 1);
}

/// An HTTP server (`serve exec` with `sh`) that reads a request up to its blank line and
/// answers with the file `dir/name`, so the test can change its answer.
fn http_from_file(dir: &std::path::Path, name: &str, status: &str) -> Running {
    let file = dir.join(name);
    write_http_answer(&file, status, name);
    let script = format!(
        "while IFS= read -r line; do [ \"$line\" = \"$(printf '\\r')\" ] && break; done; \
         cat '{}'",
        file.display()
    );
    start(&[
        "serve",
        "exec",
        "-l",
        "127.0.0.1:0",
        "--",
        "sh",
        "-c",
        &script,
    ])
}

fn write_http_answer(file: &std::path::Path, status: &str, body: &str) {
    let answer = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    std::fs::write(file, answer).expect("write the answer");
}

/// The body of the answer to `GET /` through `relay`.
fn http_body(relay: &Running) -> String {
    let mut stream = connect(&relay.addr());
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        .expect("request");
    let answer = String::from_utf8_lossy(&read_to_end(&mut stream)).into_owned();
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

#[test]
fn http_checks_take_out_a_target_that_answers_an_error_and_one_that_is_not_http() {
    let dir = tempfile::tempdir().expect("temp dir");
    let primary = http_from_file(dir.path(), "primary", "503 Service Unavailable");
    let backup = http_from_file(dir.path(), "backup", "200 OK");
    let not_http = greeting("SSH-2.0-not-http");
    let relay = forward(
        &[
            "--balance",
            "first",
            "--check-interval",
            "200ms",
            "--check-http",
            "/health",
        ],
        &[&primary.addr(), &not_http.addr(), &backup.addr()],
    );
    relay.wait_for_stderr(
        &[
            &format!(
                "health check: tcp:{} is down: answered HTTP 503",
                primary.addr()
            ),
            &format!(
                "health check: tcp:{} is down: answered with no HTTP status line",
                not_http.addr()
            ),
        ],
        Duration::from_secs(5),
    );
    // The primary takes connections, but its checks fail: clients go to the backup.
    assert_eq!(http_body(&relay), "backup");

    write_http_answer(&dir.path().join("primary"), "200 OK", "primary");
    relay.wait_for_stderr(
        &[&format!("health check: tcp:{} is up", primary.addr())],
        Duration::from_secs(5),
    );
    assert_eq!(http_body(&relay), "primary");
    assert!(
        !relay
            .stderr()
            .contains(&format!("tcp:{} is down", backup.addr())),
        "{}",
        relay.stderr()
    );
}

#[test]
fn checks_take_a_target_out_after_fall_failures_and_back_after_rise_passes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let flapping = http_from_file(dir.path(), "flapping", "200 OK");
    let backup = http_from_file(dir.path(), "backup", "200 OK");
    let relay = forward(
        &[
            "-v",
            "--balance",
            "first",
            "--check-interval",
            "100ms",
            "--check-http",
            "/",
            "--check-fall",
            "3",
            "--check-rise",
            "2",
        ],
        &[&flapping.addr(), &backup.addr()],
    );
    let target = format!("tcp:{}", flapping.addr());
    write_http_answer(&dir.path().join("flapping"), "503 Busy", "flapping");
    relay.wait_for_stderr(
        &[&format!(
            "health check: {target} is down: answered HTTP 503"
        )],
        Duration::from_secs(5),
    );
    assert_eq!(http_body(&relay), "backup");
    write_http_answer(&dir.path().join("flapping"), "200 OK", "flapping");
    relay.wait_for_stderr(
        &[&format!("health check: {target} is up")],
        Duration::from_secs(5),
    );
    assert_eq!(http_body(&relay), "flapping");
    // Down only at the third failure in a row, up only at the second pass.
    let log = relay.stderr();
    let at = |line: &str| {
        log.find(&format!("health check: {target} {line}"))
            .unwrap_or_else(|| panic!("no {line:?} in {log}"))
    };
    assert!(at("failed (1 of 3)") < at("failed (2 of 3)"), "{log}");
    assert!(at("failed (2 of 3)") < at("is down"), "{log}");
    assert!(at("is down") < at("passed (1 of 2)"), "{log}");
    assert!(at("passed (1 of 2)") < at("is up"), "{log}");
}

/// A server that answers each connection with a line naming it, then echoes.
fn named_echo(name: &str) -> Running {
    start(&[
        "serve",
        "exec",
        "-l",
        "127.0.0.1:0",
        "--",
        "sh",
        "-c",
        &format!("echo {name}; exec cat"),
    ])
}

/// Connects to `relay` and reads the first line: the name of the target behind it.
fn open_through(relay: &Running) -> (TcpStream, String) {
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
    assert!(
        relay.stderr().contains(&format!(
            "(forward to tcp:{}, tcp:{} by fewest connections)",
            a.addr(),
            b.addr()
        )),
        "{}",
        relay.stderr()
    );
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
    assert!(
        relay.stderr().contains(&format!(
            "(forward to tcp:{}, tcp:{}, tcp:{} by source address)",
            addrs[0], addrs[1], addrs[2]
        )),
        "{}",
        relay.stderr()
    );
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

/// Writes `text` to `file`, sends `relay` SIGHUP and waits for it to log `said`.
fn rewrite_and_hang_up(relay: &Running, file: &std::path::Path, text: &str, said: &str) {
    std::fs::write(file, text).expect("write the targets");
    relay.signal(libc::SIGHUP);
    relay.wait_for_stderr(&[said], Duration::from_secs(5));
}

#[test]
fn to_file_targets_are_read_again_on_sighup_and_running_relays_go_on() {
    let servers = [named_echo("A"), named_echo("B"), named_echo("C")];
    let [a, b, c] = servers.each_ref().map(Running::addr);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("targets");
    std::fs::write(&file, format!("# the pool\n{a}\n\n{b}   # second\n")).expect("write");
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
        .arg("--to-file")
        .arg(&file);
    let (relay, metrics) = start_with_metrics(cmd);
    assert!(
        relay
            .stderr()
            .contains(&format!("(forward to tcp:{a}, tcp:{b} in turn)")),
        "{}",
        relay.stderr()
    );
    let (mut on_a, first) = open_through(&relay);
    let (_on_b, second) = open_through(&relay);
    assert_eq!((first.as_str(), second.as_str()), ("A", "B"));

    // A leaves the pool and C joins it.
    rewrite_and_hang_up(
        &relay,
        &file,
        &format!("{b}\n{c}\n"),
        &format!(
            "targets reloaded from {}: tcp:{b}, tcp:{c} (added tcp:{c}; removed tcp:{a})",
            file.display()
        ),
    );
    let names: Vec<String> = (0..4).map(|_| open_through(&relay).1).collect();
    assert_eq!(names, ["B", "C", "B", "C"]);
    // The client relayed to A before goes on with it.
    on_a.write_all(b"still here\n").expect("write to A");
    let mut echoed = [0u8; 11];
    on_a.read_exact(&mut echoed).expect("A's echo");
    assert_eq!(&echoed, b"still here\n");
    // A's series are gone; C's count it.
    let scrape = crate::support::net::http_get(&metrics, "/metrics").1;
    assert!(!scrape.contains(&format!("tcp:{a}")), "{scrape}");
    assert_eq!(
        per_target(&metrics, "socketkit_forward_target_connections_total", &c),
        2
    );

    // A file that no longer reads keeps the list in force.
    rewrite_and_hang_up(
        &relay,
        &file,
        &format!("{b}\nnot a target\n"),
        &format!(
            "targets not reloaded, the old ones stay: invalid --to-file {}: line 2:",
            file.display()
        ),
    );
    let names: Vec<String> = (0..2).map(|_| open_through(&relay).1).collect();
    assert_eq!(names, ["B", "C"]);
}

#[test]
fn a_to_file_that_cannot_be_used_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path.display().to_string()
    };
    let bad_line = file("bad", "127.0.0.1:9\n:9\n");
    let empty = file("empty", "# nothing yet\n\n");
    let missing = dir.path().join("missing").display().to_string();
    let tcp = "127.0.0.1:0";
    let cases: [(&str, &[&str], i32, &str); 5] = [
        (
            tcp,
            &["--to-file", &bad_line],
            2,
            "line 2: invalid endpoint ':9'",
        ),
        (tcp, &["--to-file", &empty], 2, "it names no target"),
        (tcp, &["--to-file", &missing], 1, "cannot load --to-file"),
        (
            tcp,
            &["--to-file", &empty, "--to", "127.0.0.1:9"],
            2,
            "cannot be used with",
        ),
        (
            "udp:127.0.0.1:0",
            &["--to-file", &empty],
            2,
            "--to-file applies to stream forwarding only",
        ),
    ];
    for (listen, extra, code, wanted) in cases {
        let mut cmd = socketkit();
        cmd.args(["forward", "-l", listen]).args(extra);
        let out = run(cmd, Vec::new(), DEADLINE);
        assert_eq!(out.code(), code, "{extra:?}: {}", out.stderr);
        assert!(out.stderr.contains(wanted), "{extra:?}: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    }
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
