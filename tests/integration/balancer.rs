//! Behind a load balancer (SPEC §3.3, §3.5): a real HAProxy in front of two instances with
//! PROXY v2 and health checks on `/health`, a rolling stop under load, `curl
//! --haproxy-protocol`, and `forward --send-proxy` into HAProxy's `accept-proxy`, so that
//! both directions meet HAProxy's own parser. The metrics are scraped and checked against
//! what each test did.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::haproxy::HaProxy;
use crate::support::net::{free_port, http_get, try_connect_from};
use crate::support::process::{Running, socketkit};
use crate::support::{TestResult, wait_until};

/// How long any wait for a server's state in these tests may take.
const PATIENCE: Duration = Duration::from_secs(10);

/// Starts `cmd` (given `--metrics 127.0.0.1:0`) and returns it with its metrics address
/// (`127.0.0.1:PORT`), read from the `metrics on http://…/metrics` line that follows the
/// `listening on` one.
pub(crate) fn start_with_metrics(cmd: std::process::Command) -> (Running, String) {
    let running = Running::start(cmd, 1);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let stderr = running.stderr();
        if let Some(rest) = stderr.split("metrics on http://").nth(1) {
            let addr = rest.split("/metrics").next().unwrap_or_default().to_owned();
            let listening = stderr.find("listening on").expect("a listening line");
            assert!(
                listening < stderr.find("metrics on").unwrap_or(0),
                "the metrics line comes after the listening lines:\n{stderr}"
            );
            return (running, addr);
        }
        assert!(Instant::now() < deadline, "no metrics line:\n{stderr}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// The value of the sample `name{labels}` in a Prometheus scrape of `metrics`.
pub(crate) fn sample(metrics: &str, name: &str, labels: &str) -> u64 {
    let text = http_get(metrics, "/metrics").1;
    let key = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&key))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map(|value| value as u64)
        .unwrap_or_else(|| panic!("no {key:?} in\n{text}"))
}

/// An exec instance behind the balancer: it answers each connection with one line naming
/// itself and the peer it was told about, and takes PROXY headers from 127.0.0.1 only.
fn instance(name: &str) -> (Running, String) {
    let mut cmd = socketkit();
    cmd.env("INSTANCE", name)
        .args([
            "serve",
            "exec",
            "-l",
            "127.0.0.1:0",
            "-v",
            "--log-format",
            "json",
        ])
        .args(["--proxy-protocol", "--trusted-proxy", "127.0.0.1"])
        .args(["--shutdown-delay", "1500ms", "--drain-timeout", "5s"])
        .args(["--metrics", "127.0.0.1:0"])
        .args(["--", "sh", "-c"])
        .arg(r#"echo "$INSTANCE $SOCKETKIT_PEER_ADDR $SOCKETKIT_PEER_PORT""#);
    start_with_metrics(cmd)
}

/// One client connection through the balancer from `source`: the line it got, checked to
/// name the client's own address and port. `Err` says what went wrong.
fn ask(source: &str, front: &str) -> Result<Answer, String> {
    let mut stream = try_connect_from(source, front.parse().expect("an address"))
        .map_err(|err| format!("{source}: {err}"))?;
    let port = stream.local_addr().map_err(|e| e.to_string())?.port();
    let mut line = String::new();
    stream
        .read_to_string(&mut line)
        .map_err(|err| format!("{source}:{port}: {err}"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    match words[..] {
        [name, addr, peer_port] if addr == source && peer_port == port.to_string() => Ok(Answer {
            instance: name.to_owned(),
        }),
        _ => Err(format!("{source}:{port} got {line:?}")),
    }
}

/// Which instance answered a client.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    instance: String,
}

impl Answer {
    fn from(&self, instance: &str) -> bool {
        self.instance == instance
    }
}

#[test]
fn haproxy_spreads_clients_over_two_instances_that_see_the_real_client_and_drain_cleanly()
-> TestResult {
    let (mut a, metrics_a) = instance("a");
    let (b, metrics_b) = instance("b");
    let front = free_port();
    let config = documented_config()
        .replace("127.0.0.1:8000", &format!("127.0.0.1:{front}"))
        .replace("127.0.0.1:7001", &a.addr())
        .replace("127.0.0.1:7002", &b.addr())
        .replace("port 9101", &format!("port {}", port_of(&metrics_a)))
        .replace("port 9102", &format!("port {}", port_of(&metrics_b)));
    let Some(_haproxy) = HaProxy::start(&config, &[front]) else {
        return Ok(());
    };
    let front = format!("127.0.0.1:{front}");

    // Both instances up: round robin alternates between them, and each sees the client's
    // own address and port (from HAProxy's PROXY v2 header), from either source address.
    let deadline = Instant::now() + PATIENCE;
    let mut from_a = Vec::new();
    loop {
        let answers: Vec<Answer> = (0..10)
            // Sources in pairs, so that each instance sees both.
            .map(|i| ask(if i % 4 < 2 { "127.0.0.2" } else { "127.0.0.3" }, &front))
            .collect::<Result<_, _>>()?;
        from_a.extend(answers.iter().filter(|answer| answer.from("a")).cloned());
        if answers
            .windows(2)
            .all(|pair| pair[0].instance != pair[1].instance)
        {
            break;
        }
        assert!(Instant::now() < deadline, "no round robin: {answers:?}");
        thread::sleep(Duration::from_millis(100));
    }

    // A's metrics match what A was sent: every connection counted, none refused, and its
    // bytes exactly the PROXY v2 headers in (16 + 12 bytes for TCP over IPv4); the lines
    // out are written by the programs on the socket itself, where socketkit counts nothing
    // (and its closing lines name no bytes rather than wrong ones). The `-v` log names the
    // real client.
    let listener = format!("listener=\"tcp:{}\"", a.addr());
    let served = sample(
        &metrics_a,
        "socketkit_connections_accepted_total",
        &listener,
    );
    // A connection's close is recorded as it closes, which its client may see first.
    let ended = "socketkit_connection_duration_seconds_count";
    crate::support::wait_until(
        PATIENCE,
        || format!("{served} connections, not all ended"),
        || sample(&metrics_a, ended, &listener) == served,
    );
    assert_eq!(served, from_a.len() as u64);
    let refused = format!("{listener},reason=\"proxy\"");
    assert_eq!(
        sample(&metrics_a, "socketkit_connections_refused_total", &refused),
        0
    );
    let received = sample(&metrics_a, "socketkit_bytes_received_total", &listener);
    assert_eq!(received, served * 28, "PROXY v2 headers only");
    assert_eq!(
        sample(&metrics_a, "socketkit_bytes_sent_total", &listener),
        0
    );
    let active = sample(&metrics_a, "socketkit_connections_active", &listener);
    assert_eq!(active, 0);
    let log = a.stderr();
    let closed = log
        .lines()
        .find(|line| line.contains(r#""msg":"closed""#) && line.contains(r#""peer":"127.0.0.3:"#))
        .unwrap_or_else(|| panic!("no closed line for 127.0.0.3 in\n{log}"));
    for field in ["\"local\":", "\"duration_ms\":"] {
        assert!(closed.contains(field), "{field} in {closed}");
    }
    assert!(!closed.contains("\"bytes_"), "{closed}");
    assert!(closed.contains(&listener.replace("listener=", "\"listener\":")));

    // Under load, stop A: /health turns 503 at once, HAProxy moves every new client to B
    // while A still accepts, A drains and exits 0, and no client fails.
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let (stop, outcomes, front) = (Arc::clone(&stop), Arc::clone(&outcomes), front.clone());
            let source = if i % 2 == 0 { "127.0.0.2" } else { "127.0.0.3" };
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let outcome = (Instant::now(), ask(source, &front));
                    outcomes.lock().expect("not poisoned").push(outcome);
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    let stopped = Instant::now();
    a.signal(libc::SIGTERM);
    wait_until(
        PATIENCE,
        || "A's /health never said 503".to_owned(),
        || http_get(&metrics_a, "/health").0 == 503,
    );
    let status = a.wait(PATIENCE);
    let exited = Instant::now();
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("a client thread");
    }
    assert!(status.success(), "A exits 0 after draining: {status:?}");
    let outcomes = outcomes.lock().expect("not poisoned");
    let failed: Vec<&String> = outcomes
        .iter()
        .filter_map(|(_, o)| o.as_ref().err())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} clients failed: {failed:?}",
        failed.len(),
        outcomes.len()
    );
    let answered_by = |(_, outcome): &&(Instant, Result<Answer, String>), name: &str| {
        outcome.as_ref().is_ok_and(|answer| answer.from(name))
    };
    let before = outcomes
        .iter()
        .filter(|o| o.0 < stopped && answered_by(o, "a"));
    assert!(
        before.count() > 0,
        "A served under load before it was stopped"
    );
    let after: Vec<_> = outcomes.iter().filter(|(at, _)| *at > exited).collect();
    assert!(!after.is_empty() && after.iter().all(|o| answered_by(o, "b")));
    drop(b);
    Ok(())
}

/// The HAProxy configuration of docs/scale-out.md ("N instances behind HAProxy"), so that
/// the documented one is the one that works.
fn documented_config() -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/scale-out.md"))
        .expect("docs/scale-out.md");
    let block = doc
        .split("```haproxy\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a haproxy block in docs/scale-out.md");
    for placeholder in [
        "127.0.0.1:8000",
        "127.0.0.1:7001",
        "127.0.0.1:7002",
        "port 9101",
        "port 9102",
    ] {
        assert!(
            block.contains(placeholder),
            "the documented config names {placeholder}"
        );
    }
    block.to_owned()
}

fn port_of(addr: &str) -> &str {
    addr.rsplit(':').next().unwrap_or_default()
}
