//! `socketkit forward` keeping a pool: health checks (a connection, an HTTP request, with
//! `--check-fall`/`--check-rise`) that take targets out and back, and `--to-file` pools read
//! again on SIGHUP while relays run on.

use std::io::{Read, Write};
use std::time::Duration;

use crate::balancer::start_with_metrics;
use crate::cli_forward_targets::{
    answer, dead_target, forward, forward_with_metrics, greeting, named_echo, open_through,
    per_target, sh_server, start,
};
use crate::support::net::{connect, read_to_end};
use crate::support::process::{DEADLINE, Running, run, socketkit};
use crate::support::wait_until;

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
    sh_server(&script)
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
    relay.assert_said(&format!("(forward to tcp:{a}, tcp:{b} in turn)"));
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
    // A's series stay while it holds that client, C's count its own.
    assert_eq!(
        per_target(&metrics, "socketkit_forward_target_active", &a),
        1
    );
    assert_eq!(
        per_target(&metrics, "socketkit_forward_target_connections_total", &c),
        2
    );
    // Once its relay has ended, a reload forgets them (the relay's task lets the target go
    // a moment after its count drops: a reload or two more at most).
    drop(on_a);
    rewrite_and_hang_up(
        &relay,
        &file,
        &format!("{c}\n{b}\n"),
        &format!(
            "targets reloaded from {}: tcp:{c}, tcp:{b} (reordered)",
            file.display()
        ),
    );
    wait_until(
        Duration::from_secs(5),
        || {
            let scrape = crate::support::net::http_get(&metrics, "/metrics").1;
            let lines: Vec<&str> = scrape.lines().filter(|l| l.contains(&a)).collect();
            format!(
                "A's series outlived its relay: {lines:?}\n{}",
                relay.stderr()
            )
        },
        || {
            let reloads = relay.stderr().matches("targets reloaded from").count();
            relay.signal(libc::SIGHUP);
            wait_until(
                Duration::from_secs(5),
                || "no reload".into(),
                || relay.stderr().matches("targets reloaded from").count() > reloads,
            );
            let scrape = crate::support::net::http_get(&metrics, "/metrics").1;
            !scrape.contains(&format!("tcp:{a}"))
        },
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
    assert_eq!(names, ["C", "B"]);
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
    let streams = file("streams", "127.0.0.1:9\n");
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
            &["--to-file", &streams],
            2,
            "a datagram listener relays to a udp: or unixgram: target, not tcp:127.0.0.1:9",
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

/// Health checks of a `tls:` target end their connection as a client does (close_notify,
/// the target's bytes read until it closes): a socketkit TLS target logged every check as
/// a failed connection (`connection reset by peer`, for the session tickets left unread, or
/// `… without a TLS close_notify …`) — an outside audit of combined features.
#[test]
fn tls_health_checks_close_cleanly_on_the_target() {
    let pki = crate::support::certs::Pki::new();
    let target = start(&[
        "serve",
        "echo",
        "-l",
        "tls:127.0.0.1:0",
        "--tls-cert",
        pki.server.cert(),
        "--tls-key",
        pki.server.key(),
        "-v",
    ]);
    let target_endpoint = format!("tls:localhost:{}", target.port());
    let relay = start(&[
        "forward",
        "-l",
        "127.0.0.1:0",
        "--to",
        &target_endpoint,
        "--tls-ca",
        pki.ca(),
        "--check-interval",
        "200ms",
        "-v",
    ]);
    let closed = || target.stderr().matches(" closed ").count();
    wait_until(
        Duration::from_secs(10),
        || format!("fewer than 4 checks closed; target:\n{}", target.stderr()),
        || closed() >= 4,
    );
    let said = target.stderr();
    let failed: Vec<&str> = said
        .lines()
        .filter(|line| line.contains(" closed ") && line.contains("error="))
        .collect();
    assert!(
        failed.is_empty(),
        "checks seen as failed connections: {failed:#?}; relay:\n{}",
        relay.stderr()
    );
}

/// A check's clean close reads what its target still sends only up to a bound: against a
/// target that streams (chargen), the first version read for its whole second, about a
/// gigabyte and most of a core per check (the review of the fix above).
#[test]
fn a_health_check_does_not_drain_a_target_that_streams() {
    let target = start(&["serve", "chargen", "-l", "127.0.0.1:0", "-v"]);
    let _relay = start(&[
        "forward",
        "-l",
        "127.0.0.1:0",
        "--to",
        &target.endpoints()[0],
        "--check-interval",
        "200ms",
    ]);
    let closed = || {
        target
            .stderr()
            .lines()
            .filter(|line| line.contains(" closed "))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    wait_until(
        Duration::from_secs(10),
        || format!("fewer than 3 checks closed; target:\n{}", target.stderr()),
        || closed().len() >= 3,
    );
    for line in closed() {
        let lasted: u64 = line
            .split("duration_ms=")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|ms| ms.parse().ok())
            .unwrap_or_else(|| panic!("no duration in {line}"));
        assert!(lasted < 500, "a check held the target {lasted} ms: {line}");
    }
}

/// A check's clean close runs beside the round: a target that keeps the check's connection
/// open (it never closes its end) held every round for the close's second, so each target
/// was checked once a second whatever `--check-interval` said (the second review).
#[test]
fn a_target_slow_to_close_does_not_slow_the_rounds() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = holder.local_addr().expect("addr").to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&accepted);
    // Accepts each check and keeps it open, never closing its end.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in holder.incoming().take(200) {
            counted.fetch_add(1, Ordering::Relaxed);
            held.push(stream);
        }
    });
    let _relay = start(&[
        "forward",
        "-l",
        "127.0.0.1:0",
        "--to",
        &addr,
        "--check-interval",
        "200ms",
    ]);
    std::thread::sleep(Duration::from_millis(2100));
    let checks = accepted.load(Ordering::Relaxed);
    assert!(checks >= 6, "{checks} checks in 2.1 s at a 200 ms interval");
}
