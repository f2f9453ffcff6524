//! `socketkit_connection_duration_seconds` says how long served connections lasted: a
//! refused one is in `connections_refused_total` only, whichever stage refused it and on
//! either engine. On the epoll engine a refusal in the connection's task (after a PROXY
//! header) was counted in the histogram, one on the accept loop was not, and io_uring never
//! counted one. Found by an outside audit.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::Duration;

use crate::balancer::{sample, start_with_metrics};
use crate::io_engine::io_uring_available;
use crate::proxy_protocol::assert_refused;
use crate::support::TestResult;
use crate::support::net::connect_from;
use crate::support::process::socketkit;
use crate::support::wait_until;

/// The header of the one client `refusals_are_not_served_connections` serves.
const SERVED_HEADER: &[u8] = b"PROXY TCP4 192.0.2.9 192.0.2.1 5000 80\r\n";

fn refusals_are_not_served_connections(engine: &str) -> TestResult {
    let mut cmd = socketkit();
    cmd.args(["serve", "echo", "--io-engine", engine, "-l", "127.0.0.1:0"])
        .args(["--metrics", "127.0.0.1:0", "--deny", "192.0.2.66"])
        .args(["--proxy-protocol", "--trusted-proxy", "127.0.0.2"]);
    let (server, metrics) = start_with_metrics(cmd);
    let addr: std::net::SocketAddr = server.addr().parse()?;
    // Served: a client the balancer names, echoed.
    let mut served = connect_from("127.0.0.2", addr);
    served.write_all(&[SERVED_HEADER, b"hi"].concat())?;
    served.shutdown(Shutdown::Write)?;
    let mut got = Vec::new();
    served.read_to_end(&mut got)?;
    assert_eq!(got, b"hi");
    // Refused by the rules (the header names a denied client), and for no header.
    assert_refused(
        "127.0.0.2",
        addr,
        &[b"PROXY TCP4 192.0.2.66 192.0.2.1 5000 80\r\n", b"x"],
    );
    assert_refused("127.0.0.2", addr, &[b"GET / HTTP/1.1\r\n\r\n"]);
    // Part of a header, then the end.
    let mut partial = connect_from("127.0.0.2", addr);
    partial.write_all(b"PROXY TCP4 192.0.2.9 ")?;
    partial.shutdown(Shutdown::Write)?;
    let _ = partial.read_to_end(&mut Vec::new());
    let listener = format!("listener=\"tcp:{addr}\"");
    let refused = |reason: &str| {
        sample(
            &metrics,
            "socketkit_connections_refused_total",
            &format!("{listener},reason=\"{reason}\""),
        )
    };
    let active = || sample(&metrics, "socketkit_connections_active", &listener);
    wait_until(
        Duration::from_secs(5),
        || format!("{engine}: refusals or closes not counted"),
        || refused("acl") == 1 && refused("proxy") == 2 && active() == 0,
    );
    // A refused connection received no byte of the service, a header (whole or in part)
    // included, on either engine: the served client's header and its "hi" only.
    assert_eq!(
        sample(&metrics, "socketkit_bytes_received_total", &listener),
        (SERVED_HEADER.len() + 2) as u64,
        "{engine}"
    );
    assert_eq!(
        sample(
            &metrics,
            "socketkit_connection_duration_seconds_count",
            &listener
        ),
        1,
        "{engine}: only the served connection has a duration"
    );
    Ok(())
}

#[test]
fn the_duration_histogram_counts_served_connections_only_on_epoll() -> TestResult {
    refusals_are_not_served_connections("epoll")
}

#[test]
fn the_duration_histogram_counts_served_connections_only_on_io_uring() -> TestResult {
    if !io_uring_available() {
        return Ok(());
    }
    refusals_are_not_served_connections("io_uring")
}

/// Clients of an immediate reply that reset before it went (the reply's send fails) are
/// served connections all the same: each is in the duration histogram, and the books
/// balance (`accepted - refused - active` = the histogram's count). They were in
/// `accepted_total` only (an outside audit: 276–298 of 300 missing).
fn failed_replies_are_served_connections(engine: &str) -> TestResult {
    const CLIENTS: u64 = 40;
    let mut cmd = socketkit();
    cmd.args([
        "serve",
        "greeting",
        "--io-engine",
        engine,
        "-l",
        "127.0.0.1:0",
    ])
    .args(["--metrics", "127.0.0.1:0"]);
    let (server, metrics) = start_with_metrics(cmd);
    for _ in 0..CLIENTS {
        crate::support::net::reset(std::net::TcpStream::connect(server.addr())?);
    }
    let listener = format!("listener=\"tcp:{}\"", server.addr());
    let count = |name: &str| sample(&metrics, name, &listener);
    let books = || {
        [
            "socketkit_connections_accepted_total",
            "socketkit_connections_active",
            "socketkit_connection_duration_seconds_count",
        ]
        .map(count)
    };
    // Every client that reached the service has a duration (recorded as the connection
    // ends, which the scrape may see a moment later: waited for, not raced).
    wait_until(
        Duration::from_secs(5),
        || format!("{engine}: accepted, active, durations {:?}", books()),
        || books() == [CLIENTS, 0, CLIENTS],
    );
    Ok(())
}

#[test]
fn greetings_that_failed_are_in_the_duration_histogram_on_epoll() -> TestResult {
    failed_replies_are_served_connections("epoll")
}

#[test]
fn greetings_that_failed_are_in_the_duration_histogram_on_io_uring() -> TestResult {
    if !io_uring_available() {
        return Ok(());
    }
    failed_replies_are_served_connections("io_uring")
}

/// A metrics endpoint that cannot be bound is named as such: `cannot listen on
/// tcp:127.0.0.1:P` alone read as the service's own listener.
#[test]
fn a_metrics_endpoint_that_cannot_listen_is_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let mut cmd = socketkit();
    cmd.args(["serve", "-l", "127.0.0.1:0", "--metrics"])
        .arg(format!("127.0.0.1:{port}"));
    let out = crate::support::process::run(cmd, Vec::new(), crate::support::process::DEADLINE);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(
        out.stderr.starts_with(&format!(
            "error: cannot listen on tcp:127.0.0.1:{port} (--metrics): address already in use"
        )),
        "{}",
        out.stderr
    );
}
