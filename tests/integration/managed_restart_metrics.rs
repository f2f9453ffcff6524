//! SIGUSR2 and `--metrics` (SPEC §3.4, §3.5): the metrics socket is handed to the new process
//! like the service's listeners, so a health check or scrape that arrives during a restart
//! is never refused or reset, and once the new process reports ready every scrape is its
//! own — a scraper does not see counters jump between two processes.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::balancer::start_with_metrics;
use crate::support::TestResult;
use crate::support::net::{IO_TIMEOUT, connect, free_port};
use crate::support::process::{DEADLINE, socketkit};
use crate::support::restart::{
    Descendants, become_subreaper, read_pid, send_signal, wait_for_new_pid,
};

/// Restarts in a row; the reset of a closing socket's queue needs a scrape to arrive in a
/// short window, so one restart may not show it.
const ROUNDS: usize = 4;
/// How long the scrapes go on after the new process reported ready, while the old one
/// still drains a held connection.
const AFTER_READY: Duration = Duration::from_millis(600);
/// The scraping threads, and a bound on what each sends.
const SCRAPERS: usize = 3;
const MAX_SCRAPES: usize = 40_000;

/// What one health check or scrape got.
enum Answer {
    /// `/health`: the status code and body.
    Health(u16, String),
    /// `/metrics`: the status code and the service listener's accepted connections.
    Scrape(u16, Option<u64>),
    /// Refused, reset, cut short: described.
    Failed(String),
}

/// One request and when it was sent.
struct Exchange {
    sent: Instant,
    answer: Answer,
}

/// `GET path` over HTTP/1.0, every failure as an answer rather than a panic.
fn get(addr: &str, path: &str, accepted_key: &str) -> Answer {
    let attempt = || -> std::io::Result<Answer> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        let Some((head, body)) = answer.split_once("\r\n\r\n") else {
            return Ok(Answer::Failed(format!("cut short: {answer:?}")));
        };
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        Ok(if path == "/health" {
            Answer::Health(status, body.to_owned())
        } else {
            let accepted = body
                .lines()
                .find_map(|line| line.strip_prefix(accepted_key))
                .and_then(|value| value.trim().parse::<f64>().ok())
                .map(|value| value as u64);
            Answer::Scrape(status, accepted)
        })
    };
    attempt().unwrap_or_else(|err| {
        let kind = match err.kind() {
            ErrorKind::ConnectionRefused => "refused",
            ErrorKind::ConnectionReset => "reset",
            _ => "failed",
        };
        Answer::Failed(format!("{kind}: {err}"))
    })
}

/// Health checks and scrapes, one after the other on each of `SCRAPERS` threads, until
/// `stop` (or `MAX_SCRAPES` each, or the deadline).
fn scrape_until(
    addr: String,
    accepted_key: String,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<Vec<Exchange>> {
    thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(90);
        let threads: Vec<_> = (0..SCRAPERS)
            .map(|t| {
                let (addr, key, stop) = (addr.clone(), accepted_key.clone(), Arc::clone(&stop));
                thread::spawn(move || {
                    let mut seen = Vec::new();
                    for i in 0..MAX_SCRAPES {
                        if stop.load(Ordering::Acquire) || Instant::now() > deadline {
                            break;
                        }
                        let path = if (i + t) % 2 == 0 {
                            "/health"
                        } else {
                            "/metrics"
                        };
                        let sent = Instant::now();
                        let answer = get(&addr, path, &key);
                        seen.push(Exchange { sent, answer });
                        // A pause, so the loopback's ports in TIME_WAIT stay far from its range.
                        thread::sleep(Duration::from_micros(500));
                    }
                    seen
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().expect("a scraping thread panicked"))
            .collect()
    })
}

/// A connection to the echo service, answered once: the process that accepted it counts it,
/// and drains until it is closed.
fn held_connection(addr: &str) -> std::io::Result<TcpStream> {
    let mut held = connect(addr);
    held.write_all(b"x")?;
    held.read_exact(&mut [0u8; 1])?;
    Ok(held)
}

/// `ROUNDS` restarts of `serve echo --metrics METRICS` while health checks and scrapes go
/// on: none fails, and none sent after a new process reported ready reaches the old one.
fn scrape_through_restarts(metrics: &str) -> TestResult {
    become_subreaper();
    let dir = tempfile::tempdir()?;
    let pid_file = dir.path().join("serve.pid");
    let mut cmd = socketkit();
    cmd.args(["serve", "echo", "-l", "127.0.0.1:0", "--metrics", metrics])
        .args(["--drain-timeout", "20s", "--pid-file"])
        .arg(&pid_file);
    let (mut first, metrics) = start_with_metrics(cmd);
    let service = first.addr();
    // Each process counts the connections it accepted; a new one starts at 0.
    let accepted_key =
        format!("socketkit_connections_accepted_total{{listener=\"tcp:{service}\"}} ");
    let stop = Arc::new(AtomicBool::new(false));
    let scrapes = scrape_until(metrics.clone(), accepted_key, Arc::clone(&stop));
    let mut adopted = Descendants::default();
    let mut pid = read_pid(&pid_file).expect("the pid file is written once ready");
    // From when each new process was seen to have reported ready to when the test made a
    // connection to it: every scrape sent in between must be the new process's (0).
    let mut only_new = Vec::new();
    for round in 0..ROUNDS {
        // The connection the old process drains: it keeps serving its own counters, if
        // anything still sends it scrapes, until the connection closes.
        let held = held_connection(&service)?;
        thread::sleep(Duration::from_millis(200));
        send_signal(pid, libc::SIGUSR2);
        let new = wait_for_new_pid(&pid_file, pid, DEADLINE);
        adopted.add(new);
        first.wait_for_stderr(&[&format!("process {new} serves now")], DEADLINE);
        let ready = Instant::now();
        thread::sleep(AFTER_READY);
        only_new.push((ready, Instant::now()));
        // The old process exits once its connection is gone (the first one, our child,
        // is waited for at the end, when nothing else holds its stderr open).
        drop(held);
        if round > 0 {
            assert_eq!(adopted.reap(pid, DEADLINE), 0, "{}", first.stderr());
        }
        pid = new;
        // Scrapes go on while no process drains any more.
        thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Release);
    let seen = scrapes.join().map_err(|_| "the scrapers panicked")?;
    send_signal(pid, libc::SIGTERM);
    assert_eq!(adopted.reap(pid, DEADLINE), 0);
    let status = first.wait(DEADLINE);
    let log = first.stderr();
    assert!(status.success(), "{log}");

    let mut faults = Vec::new();
    // (a) Every health check said 200 and every scrape was whole.
    let failed: Vec<String> = seen
        .iter()
        .filter_map(|exchange| match &exchange.answer {
            Answer::Health(200, body) if body == "ok\n" => None,
            Answer::Scrape(200, Some(_)) => None,
            Answer::Health(status, body) => Some(format!("/health: {status} {body:?}")),
            Answer::Scrape(status, _) => Some(format!("/metrics: {status}, no accepted count")),
            Answer::Failed(why) => Some(why.clone()),
        })
        .collect();
    if !failed.is_empty() {
        faults.push(format!(
            "{} of {} requests failed, e.g. {:?}",
            failed.len(),
            seen.len(),
            &failed[..failed.len().min(5)]
        ));
    }
    // (b) Once the new process reported ready, only it answered scrapes: each process counts
    // its own held connection, so the old one's scrapes say 1.
    let mut checked = 0;
    let mut from_old = Vec::new();
    for (from, to) in &only_new {
        for exchange in seen.iter().filter(|e| e.sent >= *from && e.sent < *to) {
            if let Answer::Scrape(_, accepted) = exchange.answer {
                checked += 1;
                if accepted != Some(0) {
                    from_old.push(exchange.sent - *from);
                }
            }
        }
    }
    if !from_old.is_empty() {
        faults.push(format!(
            "{} of {checked} scrapes sent after a new process reported ready came from the \
             old one, e.g. {:?} after",
            from_old.len(),
            &from_old[..from_old.len().min(5)]
        ));
    }
    // Each new process announced the same metrics endpoint: the socket, not a new bind.
    let announced: Vec<&str> = log
        .lines()
        .filter_map(|line| line.strip_prefix("metrics on http://"))
        .collect();
    if announced.len() != ROUNDS + 1
        || announced
            .iter()
            .any(|at| *at != format!("{metrics}/metrics"))
    {
        faults.push(format!("announced {announced:?}, not {metrics} each time"));
    }
    assert!(faults.is_empty(), "{}", faults.join("\n"));
    // Enough traffic that the checks mean something.
    assert!(
        checked >= ROUNDS * 10,
        "only {checked} scrapes after a restart"
    );
    Ok(())
}

#[test]
fn scrapes_across_restarts_are_never_reset_and_reach_only_the_new_process() -> TestResult {
    scrape_through_restarts(&format!("127.0.0.1:{}", free_port()))
}

/// `--metrics 127.0.0.1:0`: a new process used to bind a port of its own, and scrapes of
/// the first one's port were refused once it exited.
#[test]
fn a_metrics_port_0_is_kept_across_restarts() -> TestResult {
    scrape_through_restarts("127.0.0.1:0")
}

/// An older socketkit, played by Python: it hands over its listener but no metrics socket,
/// holds the metrics port with `SO_REUSEPORT`, and closes it once the new process reports
/// ready; then it waits for the new process and exits with its code.
const OLDER_SOCKETKIT: &str = r#"
import os, socket, subprocess, sys
service = socket.socket()
service.bind(("127.0.0.1", 0))
service.listen()
metrics = socket.socket()
metrics.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
metrics.bind(("127.0.0.1", 0))
metrics.listen()
port = metrics.getsockname()[1]
read, write = os.pipe()
env = dict(os.environ, SOCKETKIT_HANDOVER_FDS=str(service.fileno()),
           SOCKETKIT_HANDOVER_READY_FD=str(write), SOCKETKIT_HANDOVER_FROM=str(os.getpid()))
child = subprocess.Popen(
    [sys.argv[1], "serve", "-l", "127.0.0.1:0", "--metrics", "127.0.0.1:%d" % port],
    env=env, pass_fds=(service.fileno(), write))
os.close(write)
pid = os.read(read, 64).decode().strip()
metrics.close()
sys.stderr.write("older: port %d, new process %s ready\n" % (port, pid or "never"))
sys.stderr.flush()
sys.exit(child.wait())
"#;

/// From a socketkit older than the handing over of the metrics socket, a restart still
/// works: the new process binds the port beside the old one's, as every restart did.
#[test]
fn a_predecessor_that_hands_over_no_metrics_socket_is_joined_on_its_port() -> TestResult {
    if !crate::support::tools::available("python3") {
        return Ok(());
    }
    let mut cmd = crate::support::process::command(std::path::Path::new("/usr/bin/env"));
    cmd.args([
        "python3",
        "-c",
        OLDER_SOCKETKIT,
        env!("CARGO_BIN_EXE_socketkit"),
    ]);
    let mut older = crate::support::process::Running::start(cmd, 1);
    older.wait_for_stderr(&["older: port "], DEADLINE);
    let log = older.stderr();
    let (port, pid) = log
        .split("older: port ")
        .nth(1)
        .and_then(|rest| {
            let mut words = rest.split_whitespace();
            let port = words.next()?.trim_end_matches(',').to_owned();
            let pid = words.nth(2)?.parse::<i32>().ok()?;
            Some((port, pid))
        })
        .ok_or_else(|| format!("the new process never reported ready:\n{log}"))?;
    let metrics = format!("127.0.0.1:{port}");
    // Asked before the new process is stopped, so that it is stopped whatever it answers.
    let health = get(&metrics, "/health", "");
    send_signal(pid, libc::SIGTERM);
    let status = older.wait(DEADLINE);
    let log = older.stderr();
    assert!(
        matches!(&health, Answer::Health(200, body) if body == "ok\n"),
        "{log}"
    );
    assert!(
        log.contains(&format!("metrics on http://{metrics}/metrics")),
        "{log}"
    );
    assert!(status.success(), "{log}");
    Ok(())
}
