//! `socketkit bench`'s figures against servers written here, which count what they see for
//! themselves: answers that come late, connections the server ends, `--count`, a server
//! that stops answering, an idle run that holds nothing, and the signals that end a run.
//! The bounds are loose where a loaded machine could move them, and tight where the bug
//! was a difference of kind (a stale answer counted as fresh, a worker that never came back).

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::cli_bench::{bench, json};
use crate::support::process::{DEADLINE, socketkit, wait_bounded};

/// A server thread that runs `serve` on each accepted connection, one at a time, counting
/// them, until the returned flag is set (or 20 s pass).
pub(crate) fn tcp_server<F>(serve: F) -> (String, Arc<AtomicU64>, Arc<AtomicBool>)
where
    F: Fn(std::net::TcpStream) + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr").to_string();
    let (accepted, done) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let (count, stop) = (Arc::clone(&accepted), Arc::clone(&done));
    thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            match listener.accept() {
                Ok((stream, _)) => {
                    count.fetch_add(1, Ordering::Relaxed);
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                    serve(stream);
                }
                Err(_) => thread::sleep(Duration::from_millis(1)),
            }
        }
    });
    (addr, accepted, done)
}

/// A UDP server thread that calls `answer` with each datagram and its sender, counting
/// them, until the returned flag is set (or 20 s pass).
fn udp_server<F>(answer: F) -> (std::net::SocketAddr, Arc<AtomicU64>, Arc<AtomicBool>)
where
    F: Fn(&UdpSocket, &[u8], std::net::SocketAddr) + Send + 'static,
{
    let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = server.local_addr().expect("addr");
    server
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let (received, done) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let (count, stop) = (Arc::clone(&received), Arc::clone(&done));
    thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let deadline = Instant::now() + Duration::from_secs(20);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            if let Ok((n, from)) = server.recv_from(&mut buf) {
                count.fetch_add(1, Ordering::Relaxed);
                answer(&server, &buf[..n], from);
            }
        }
    });
    (addr, received, done)
}

/// An echo server that ends each connection after three blocks of 4 KiB: a quota, an idle
/// limit, a restart. Each worker must come back: the one whose read failed used to wait
/// for room in its window (which only its reads make) until the end of the run.
#[test]
fn an_echo_worker_reconnects_after_the_server_ends_its_connection() {
    let (addr, accepted, done) = tcp_server(|mut stream| {
        let mut block = vec![0u8; 4096];
        for _ in 0..3 {
            if stream.read_exact(&mut block).is_err() || stream.write_all(&block).is_err() {
                return;
            }
        }
        // A clean end (FIN, not a reset), reading what still comes until the client closes:
        // its writes go on succeeding, so only its reads can tell it the connection is over.
        let _ = stream.shutdown(std::net::Shutdown::Write);
        while stream.read(&mut block).is_ok_and(|n| n > 0) {}
    });
    let out = bench(
        &addr,
        "--mode echo --size 4096 -c 1 -d 1s --warmup 0 --json",
    );
    done.store(true, Ordering::Relaxed);
    let report = json(&out);
    let connections = accepted.load(Ordering::Relaxed);
    // A 10 ms pause after each failure: tens of connections in a second where the stalled
    // worker made one.
    assert!(connections >= 5, "{connections} connections: {report}");
    assert!(report["completed"].as_u64().unwrap_or(0) >= 10, "{report}");
}

/// A UDP server that answers every datagram 150 ms late, beyond bench's 100 ms timeout:
/// every operation times out. The late answers used to be taken as the next request's
/// (every request sends the same bytes), which read as sub-millisecond answers.
#[test]
fn a_late_udp_answer_is_never_taken_for_the_next_request() {
    let (addr, _received, done) = udp_server(|server, datagram, from| {
        thread::sleep(Duration::from_millis(150));
        let _ = server.send_to(datagram, from);
    });
    for options in [
        "--mode echo --size 16 -c 1 -d 1s --warmup 0 --timeout 100ms --json",
        "--mode echo --size 16 -c 2 -d 1s --warmup 0 --timeout 100ms --rate 20 --json",
    ] {
        let out = bench(&format!("udp:{addr}"), options);
        let report = json(&out);
        assert_eq!(report["completed"], 0, "{options}: {report}");
        assert!(
            report["errors"]["timeout"].as_u64().unwrap_or(0) >= 3,
            "{options}: {report}"
        );
        assert_eq!(out.code(), 1, "{options}: {}", out.stderr);
    }
    done.store(true, Ordering::Relaxed);
}

/// A UDP server that answers every request twice: the second answer is no answer to the
/// next request (it used to be taken for one, doubling the count at a latency of nothing).
#[test]
fn a_duplicate_udp_answer_is_not_taken_for_the_next_request() {
    let (addr, received, done) = udp_server(|server, datagram, from| {
        let _ = server.send_to(datagram, from);
        let _ = server.send_to(datagram, from);
    });
    let out = bench(
        &format!("udp:{addr}"),
        "--mode echo --size 16 -c 1 -d 500ms --warmup 0 --json",
    );
    done.store(true, Ordering::Relaxed);
    let completed = json(&out)["completed"].as_u64().unwrap_or(0);
    let asked = received.load(Ordering::Relaxed);
    assert!(completed > 0, "{}", out.stderr);
    assert!(
        completed <= asked,
        "{completed} completed, {asked} requests"
    );
}

/// `--count N` stops starting operations once N have completed: with one worker the server
/// sees N connections, not the hundreds a 20 ms look at the count let through.
#[test]
fn count_sends_no_more_than_one_worker_finishes() {
    let (addr, accepted, done) = tcp_server(|mut stream| {
        let _ = stream.write_all(b"hello\n");
    });
    for (options, most) in [("--count 1 -c 1", 1), ("--count 50 -c 1", 50)] {
        let before = accepted.load(Ordering::Relaxed);
        let out = bench(&addr, &format!("{options} -d 10s --warmup 0 --json"));
        assert_eq!(out.code(), 0, "{}", out.stderr);
        assert_eq!(json(&out)["completed"], most);
        // Counted once the client's connect has returned: a moment for the server's thread.
        thread::sleep(Duration::from_millis(100));
        let seen = accepted.load(Ordering::Relaxed) - before;
        assert_eq!(seen, most, "{options}: the server saw {seen}");
    }
    done.store(true, Ordering::Relaxed);
}

/// A server that stops answering halfway through: the time series goes on to the end of
/// the run with the zeros it was, not only up to the last answer.
#[test]
fn the_time_series_shows_a_server_that_stopped_answering() {
    let started = Instant::now();
    let (addr, _accepted, done) = tcp_server(move |mut stream| {
        if started.elapsed() < Duration::from_millis(500) {
            let _ = stream.write_all(b"hello\n");
        } else {
            // Holds the client past its timeout, then lets it go.
            thread::sleep(Duration::from_millis(300));
        }
    });
    let out = bench(&addr, "-c 1 -d 2s --warmup 0 --timeout 200ms --json");
    done.store(true, Ordering::Relaxed);
    let report = json(&out);
    let timeline = report["rate_timeline"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(timeline.len() >= 7, "{report}");
    assert_eq!(
        timeline.last().and_then(|r| r.as_f64()),
        Some(0.0),
        "{report}"
    );
}

/// An idle run whose server closed every connection held nothing: a failed run, not a
/// report of `held 0` that exits 0.
#[test]
fn an_idle_run_that_holds_nothing_fails() {
    let (addr, _accepted, done) = tcp_server(drop);
    let out = bench(&addr, "--mode idle -c 4 -d 500ms --json");
    done.store(true, Ordering::Relaxed);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(
        out.stderr.starts_with("error: no connection held"),
        "{}",
        out.stderr
    );
}

/// SIGTERM (what `timeout` and CI runners send) ends a run with its report, as Ctrl-C does;
/// a signal during the warm-up says so.
#[test]
fn sigterm_ends_a_run_with_its_report_and_the_warm_up_is_named() {
    let (addr, _accepted, done) = tcp_server(|mut stream| {
        let _ = stream.write_all(b"hello\n");
    });
    for (warmup, code, said) in [("0", 0, ""), ("30s", 1, "interrupted during the warm-up")] {
        let mut cmd = socketkit();
        cmd.args(["bench", &addr, "-d", "60s", "--warmup", warmup, "-c", "1"]);
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("start");
        thread::sleep(Duration::from_millis(500));
        // SAFETY: kill(2) on a child we spawned and have not reaped.
        unsafe { libc::kill(i32::try_from(child.id()).expect("pid"), libc::SIGTERM) };
        let status = wait_bounded(&mut child, DEADLINE);
        let mut out = String::new();
        let mut err = String::new();
        let _ = child.stdout.take().map(|mut s| s.read_to_string(&mut out));
        let _ = child.stderr.take().map(|mut s| s.read_to_string(&mut err));
        assert_eq!(status.code(), Some(code), "warm-up {warmup}: {err}");
        if code == 0 {
            assert!(out.contains("completed"), "{out}");
        } else {
            assert!(err.contains(said), "{err}");
        }
    }
    done.store(true, Ordering::Relaxed);
}
