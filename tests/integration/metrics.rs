//! `--metrics` and `/health` (SPEC §3.5) through the real binary: each path a connection
//! can take counts what the test did (an immediate reply, a relay spliced or copied, a
//! datagram, `listen -k`), and a shutdown with a delay answers 503 while it still accepts.

use std::io::{Read, Write};
use std::net::{Shutdown, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use crate::balancer::{sample, start_with_metrics};
use crate::support::net::{connect, free_port, http_get, payload, read_to_end};
use crate::support::process::{DEADLINE, Running, socketkit, socketkit_with_fd_limit};
use crate::support::restart::{
    Descendants, become_subreaper, read_pid, send_signal, wait_for_new_pid,
};
use crate::support::{TestResult, wait_until};

#[test]
fn greetings_are_counted_and_a_delayed_shutdown_says_503_while_it_still_accepts() -> TestResult {
    let mut cmd = socketkit();
    cmd.args(["serve", "-l", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
        .args(["--shutdown-delay", "1s"]);
    let (mut server, metrics) = start_with_metrics(cmd);
    assert_eq!(http_get(&metrics, "/health"), (200, "ok\n".to_owned()));
    for _ in 0..3 {
        assert_eq!(read_to_end(&mut connect(&server.addr())), "你好".as_bytes());
    }
    let listener = format!("listener=\"tcp:{}\"", server.addr());
    // What a connection's close records (its bytes, its duration, the active count) is
    // recorded as it closes, which the client may see first: waited for, not raced.
    let expected = [
        ("socketkit_connections_accepted_total", 3),
        ("socketkit_bytes_sent_total", 18),
        ("socketkit_bytes_received_total", 0),
        ("socketkit_connection_duration_seconds_count", 3),
        ("socketkit_connections_active", 0),
    ];
    let read = || {
        expected
            .iter()
            .map(|(name, _)| (*name, sample(&metrics, name, &listener)))
            .collect::<Vec<_>>()
    };
    wait_until(
        Duration::from_secs(5),
        || format!("{:?} != {expected:?}", read()),
        || read() == expected,
    );

    let asked = Instant::now();
    server.signal(libc::SIGTERM);
    let deadline = asked + DEADLINE;
    while http_get(&metrics, "/health").0 != 503 {
        assert!(Instant::now() < deadline, "/health never said 503");
        thread::sleep(Duration::from_millis(10));
    }
    // Still accepting during the delay, then closed.
    assert_eq!(read_to_end(&mut connect(&server.addr())), "你好".as_bytes());
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "the check ran within the delay"
    );
    let status = server.wait(DEADLINE);
    assert!(status.success(), "{status:?}");
    assert!(
        asked.elapsed() >= Duration::from_secs(1),
        "exited before the delay ended"
    );
    assert!(std::net::TcpStream::connect(server.addr()).is_err());
    Ok(())
}

/// A `forward` with metrics to an echo server; `no_splice` forces the copy relay.
fn relay_counts(no_splice: bool) -> TestResult {
    let mut cmd = socketkit();
    cmd.args(["serve", "echo", "-l", "127.0.0.1:0"]);
    let echo = Running::start(cmd, 1);
    let mut cmd = socketkit();
    if no_splice {
        cmd.env("SOCKETKIT_NO_SPLICE", "1");
    }
    cmd.args(["forward", "-l", "127.0.0.1:0", "--to", &echo.addr()])
        .args(["--metrics", "127.0.0.1:0"]);
    let (relay, metrics) = start_with_metrics(cmd);
    let data = payload(100_000);
    let mut client = connect(&relay.addr());
    let writer = {
        let mut client = client.try_clone()?;
        let data = data.clone();
        thread::spawn(move || {
            client.write_all(&data)?;
            client.shutdown(Shutdown::Write)
        })
    };
    let mut back = Vec::new();
    client.read_to_end(&mut back)?;
    writer.join().expect("the writer")?;
    assert!(back == data, "the echo came back whole");
    drop(client);
    let listener = format!("listener=\"tcp:{}\"", relay.addr());
    wait_until(
        DEADLINE,
        || "the relay never closed".to_owned(),
        || sample(&metrics, "socketkit_connections_active", &listener) == 0,
    );
    assert_eq!(
        sample(&metrics, "socketkit_bytes_received_total", &listener),
        100_000
    );
    assert_eq!(
        sample(&metrics, "socketkit_bytes_sent_total", &listener),
        100_000
    );
    assert_eq!(
        sample(&metrics, "socketkit_connections_accepted_total", &listener),
        1
    );
    Ok(())
}

#[test]
fn a_spliced_relay_counts_its_bytes() -> TestResult {
    relay_counts(false)
}

#[test]
fn a_copying_relay_counts_its_bytes() -> TestResult {
    relay_counts(true)
}

#[test]
fn datagrams_count_their_bytes_and_denied_ones_count_as_dropped() -> TestResult {
    let mut cmd = socketkit();
    cmd.args(["serve", "echo", "-l", "udp:127.0.0.1:0"]).args([
        "--deny",
        "127.0.0.3",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let (server, metrics) = start_with_metrics(cmd);
    let target = server.endpoints()[0].trim_start_matches("udp:").to_owned();
    // Two datagrams from a denied source first: the server handles datagrams in order, so
    // once the allowed ones are answered these have been dropped.
    let denied = UdpSocket::bind("127.0.0.3:0")?;
    denied.send_to(b"no", &target)?;
    denied.send_to(b"never", &target)?;
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = [0u8; 64];
    for word in [&b"one"[..], b"three"] {
        socket.send_to(word, &target)?;
        let (n, _) = socket.recv_from(&mut buf)?;
        assert_eq!(&buf[..n], word);
    }
    let listener = format!("listener=\"udp:{target}\"");
    // The server counts a reply once its send returned, which may be just after the client
    // has it.
    wait_until(
        DEADLINE,
        || "the replies were never counted".to_owned(),
        || sample(&metrics, "socketkit_bytes_sent_total", &listener) >= 8,
    );
    assert_eq!(
        sample(&metrics, "socketkit_bytes_received_total", &listener),
        8
    );
    assert_eq!(sample(&metrics, "socketkit_bytes_sent_total", &listener), 8);
    // Dropped datagrams reach no service: their bytes are not counted as received.
    let dropped = format!("{listener},reason=\"acl\"");
    assert_eq!(
        sample(&metrics, "socketkit_datagrams_dropped_total", &dropped),
        2
    );
    denied.set_nonblocking(true)?;
    assert!(
        denied.recv_from(&mut buf).is_err(),
        "a denied source got an answer"
    );
    Ok(())
}

/// A stream listener shows `connections_refused_total` by reason and no datagram series; a
/// datagram listener `datagrams_dropped_total` for the reasons a datagram can be dropped
/// for (`acl`, `max_per_source`, `rate`) and no refused connections: no series that could
/// never move (other series, such as a datagram listener's duration histogram, stay).
#[test]
fn each_listener_shows_the_refusal_series_of_its_kind() -> TestResult {
    let mut cmd = socketkit();
    cmd.args([
        "serve",
        "echo",
        "-l",
        "127.0.0.1:0",
        "-l",
        "udp:127.0.0.1:0",
    ])
    .args(["--metrics", "127.0.0.1:0"]);
    let server = Running::start(cmd, 2);
    wait_until(
        DEADLINE,
        || server.stderr(),
        || server.stderr().contains("/metrics"),
    );
    let stderr = server.stderr();
    let metrics = stderr
        .split("metrics on http://")
        .nth(1)
        .and_then(|rest| rest.split("/metrics").next())
        .expect("a metrics line");
    let text = http_get(metrics, "/metrics").1;
    let series = |name: &str, endpoint: &str| -> Vec<String> {
        let key = format!("{name}{{listener=\"{endpoint}\",reason=\"");
        let mut reasons: Vec<String> = text
            .lines()
            .filter_map(|line| line.strip_prefix(&key))
            .filter_map(|rest| rest.split('"').next().map(str::to_owned))
            .collect();
        reasons.sort();
        reasons
    };
    let (stream, datagram) = (&server.endpoints()[0], &server.endpoints()[1]);
    assert!(datagram.starts_with("udp:"), "{datagram}");
    let refused = "socketkit_connections_refused_total";
    let dropped = "socketkit_datagrams_dropped_total";
    assert_eq!(
        series(refused, stream),
        ["acl", "max_per_source", "proxy", "rate", "tls"],
        "{text}"
    );
    assert!(series(dropped, stream).is_empty(), "{text}");
    assert_eq!(
        series(dropped, datagram),
        ["acl", "max_per_source", "rate"],
        "{text}"
    );
    assert!(series(refused, datagram).is_empty(), "{text}");
    Ok(())
}

#[test]
fn listen_keep_open_counts_each_connection() -> TestResult {
    let mut cmd = socketkit();
    cmd.args(["listen", "-k", "127.0.0.1:0", "--metrics", "127.0.0.1:0"]);
    let (mut listen, metrics) = start_with_metrics(cmd);
    drop(listen.take_stdin()); // nothing to send: each connection gets an end of stream
    for word in ["abc", "defgh"] {
        let mut client = connect(&listen.addr());
        client.write_all(word.as_bytes())?;
        client.shutdown(Shutdown::Write)?;
        assert!(read_to_end(&mut client).is_empty());
    }
    let listener = format!("listener=\"tcp:{}\"", listen.addr());
    wait_until(
        DEADLINE,
        || "the second connection never ended".to_owned(),
        || {
            sample(
                &metrics,
                "socketkit_connection_duration_seconds_count",
                &listener,
            ) >= 2
        },
    );
    assert_eq!(
        sample(&metrics, "socketkit_connections_accepted_total", &listener),
        2
    );
    assert_eq!(
        sample(&metrics, "socketkit_bytes_received_total", &listener),
        8
    );
    assert_eq!(sample(&metrics, "socketkit_bytes_sent_total", &listener), 0);
    assert_eq!(
        sample(&metrics, "socketkit_connections_active", &listener),
        0
    );
    assert_eq!(http_get(&metrics, "/health").0, 200);
    Ok(())
}

/// The metrics socket has `SO_REUSEPORT` (for a restart from or to a socketkit that binds
/// beside its predecessor rather than inheriting it); a second server (not a restart)
/// given the same `--metrics` port shared it, and the two split the scrapes and health
/// checks between them. It must fail as a taken listening port does.
#[test]
fn a_metrics_port_another_server_holds_is_address_in_use() -> TestResult {
    let mut cmd = socketkit();
    cmd.args(["serve", "-l", "127.0.0.1:0", "--metrics", "127.0.0.1:0"]);
    let (first, metrics) = start_with_metrics(cmd);
    let mut second = socketkit();
    second.args(["serve", "echo", "-l", "127.0.0.1:0", "--metrics", &metrics]);
    let out = crate::support::process::run(second, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(
        out.stderr.starts_with("error: cannot listen on ")
            && out.stderr.trim_end().ends_with("address already in use"),
        "{}",
        out.stderr
    );
    // The first server still answers its scrapes alone.
    assert_eq!(http_get(&metrics, "/health").0, 200);
    drop(first);
    Ok(())
}

#[test]
fn a_sigusr2_restart_takes_the_metrics_port_over() -> TestResult {
    become_subreaper();
    let dir = tempfile::tempdir()?;
    let pid_file = dir.path().join("serve.pid");
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut cmd = socketkit();
    cmd.args([
        "serve",
        "-l",
        "127.0.0.1:0",
        "--metrics",
        &metrics,
        "--pid-file",
    ])
    .arg(&pid_file);
    let (mut old, _) = start_with_metrics(cmd);
    let first = read_pid(&pid_file).expect("the pid file is written once ready");
    let mut adopted = Descendants::default();
    send_signal(first, libc::SIGUSR2);
    let second = wait_for_new_pid(&pid_file, first, DEADLINE);
    adopted.add(second);
    let status = old.wait(DEADLINE);
    assert!(
        status.success(),
        "the old process drains and exits 0: {}",
        old.stderr()
    );
    // The new process serves the same metrics endpoint, and counts what it serves.
    assert_eq!(http_get(&metrics, "/health").0, 200, "{}", old.stderr());
    assert_eq!(read_to_end(&mut connect(&old.addr())), "你好".as_bytes());
    let listener = format!("listener=\"tcp:{}\"", old.addr());
    assert_eq!(
        sample(&metrics, "socketkit_connections_accepted_total", &listener),
        1
    );
    send_signal(second, libc::SIGTERM);
    assert_eq!(adopted.reap(second, DEADLINE), 0);
    Ok(())
}

/// The old process of a restart drains while the new one serves the same port and the
/// same metrics port. The old one answered 503 to the health checks that reached it, and
/// HAProxy took the instance out and back in several times per restart; now the metrics
/// socket is handed over and only the new process answers (managed_restart_metrics.rs).
#[test]
fn health_stays_200_from_both_processes_of_a_restart() -> TestResult {
    become_subreaper();
    let dir = tempfile::tempdir()?;
    let pid_file = dir.path().join("serve.pid");
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut cmd = socketkit();
    cmd.args(["serve", "echo", "-l", "127.0.0.1:0", "--metrics", &metrics])
        .args(["--shutdown-delay", "5s", "--pid-file"])
        .arg(&pid_file);
    let (mut old, _) = start_with_metrics(cmd);
    // A connection in flight keeps the old process draining.
    let mut held = connect(&old.addr());
    held.write_all(b"x")?;
    held.read_exact(&mut [0u8; 1])?;
    let first = read_pid(&pid_file).expect("the pid file is written once ready");
    let mut adopted = Descendants::default();
    send_signal(first, libc::SIGUSR2);
    let second = wait_for_new_pid(&pid_file, first, DEADLINE);
    adopted.add(second);
    // The old process drains its held connection meanwhile; every answer is 200.
    let answers: Vec<u16> = (0..30).map(|_| http_get(&metrics, "/health").0).collect();
    assert!(answers.iter().all(|&code| code == 200), "{answers:?}");
    // No shutdown delay either: the new process serves the listeners already.
    held.shutdown(Shutdown::Write)?;
    let status = old.wait(DEADLINE);
    assert!(status.success(), "{status}: {}", old.stderr());
    // The shutdown delay's line, which a drain after a handover skips. (Not a bare "503":
    // the log names the new process's pid, which can hold those digits.)
    assert!(
        !old.stderr().contains("while /health answers 503"),
        "{}",
        old.stderr()
    );
    // The new process does keep the shutdown delay; a second signal skips it.
    send_signal(second, libc::SIGTERM);
    thread::sleep(Duration::from_millis(100));
    send_signal(second, libc::SIGTERM);
    assert_eq!(adopted.reap(second, DEADLINE), 0);
    Ok(())
}

#[test]
fn accepts_out_of_descriptors_are_counted_by_errno() -> TestResult {
    let mut cmd = socketkit_with_fd_limit(64);
    cmd.args([
        "serve",
        "echo",
        "-l",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let (server, metrics) = start_with_metrics(cmd);
    // More clients than descriptors: accept fails with EMFILE until some close.
    let clients: Vec<_> = (0..100).map(|_| connect(&server.addr())).collect();
    thread::sleep(Duration::from_millis(300));
    let listener = format!("listener=\"tcp:{}\"", server.addr());
    let emfile = format!("{listener},errno=\"EMFILE\"");
    // While the process is out of descriptors, the very time to look: the metrics
    // endpoint answers with the one it keeps in reserve.
    let errors = sample(&metrics, "socketkit_accept_errors_total", &emfile);
    assert!(errors >= 1, "{errors} EMFILE counted");
    assert_eq!(http_get(&metrics, "/health").0, 200, "health while out");
    drop(clients);
    Ok(())
}

/// Idle connections to the metrics port each held a descriptor until their request timed
/// out, with no bound: sixty of them under `ulimit -n 64` left the service none to accept
/// its clients with. The endpoint holds a bounded number at once (past it, the one that
/// waited longest for its request is closed for the next).
#[test]
fn idle_scrapers_cannot_take_the_services_descriptors() -> TestResult {
    let mut cmd = socketkit_with_fd_limit(64);
    cmd.args(["serve", "-l", "127.0.0.1:0", "--metrics", "127.0.0.1:0"]);
    let (server, metrics) = start_with_metrics(cmd);
    let idle: Vec<_> = (0..60).map(|_| connect(&metrics)).collect();
    thread::sleep(Duration::from_millis(300));
    // Answered at once, not once the idle scrapers time out (5 s).
    for _ in 0..3 {
        let mut client = connect(&server.addr());
        client.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut got = Vec::new();
        client.read_to_end(&mut got)?;
        assert_eq!(got, "你好".as_bytes());
    }
    drop(idle);
    assert_eq!(http_get(&metrics, "/health").0, 200);
    Ok(())
}
