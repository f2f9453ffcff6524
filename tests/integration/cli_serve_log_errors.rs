//! At `-v` a connection that fails leaves one line, its `closed` line, which says how it
//! failed (`error`) beside its `peer`, `local` and `listener`: the epoll engine wrote a
//! second line, `connection ended: REASON`, with none of the connection's fields, and the
//! io_uring engine's line (and `forward`'s spliced relay) said nothing of the failure. A
//! datagram's line names its listener too. Found by an outside audit of long runs.

use std::io::Write;
use std::time::Duration;

use serde_json::Value;

use crate::support::net::{connect, reset};
use crate::support::process::{Running, socketkit};

fn serve(extra: &[&str]) -> Running {
    serve_on("epoll", extra)
}

fn serve_on(engine: &str, extra: &[&str]) -> Running {
    let mut cmd = socketkit();
    cmd.args([
        "serve",
        "echo",
        "-l",
        "127.0.0.1:0",
        "-v",
        "--log-format",
        "json",
    ])
    .args(["--io-engine", engine])
    .args(extra);
    Running::start(cmd, 1)
}

/// The JSON objects of the log after its plain `listening on` line.
fn objects(server: &mut Running) -> Vec<Value> {
    server.signal(libc::SIGTERM);
    let _ = server.wait(Duration::from_secs(10));
    server
        .stderr()
        .lines()
        .filter(|line| !line.starts_with("listening on"))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect()
}

/// The `closed` line of `peer`, checking that no line about the connection's end lacks
/// its fields.
fn closed_line(objects: &[Value], peer: &str) -> Value {
    for object in objects {
        let msg = object["msg"].as_str().unwrap_or_default();
        if msg.starts_with("connection") || msg == "closed" {
            assert!(object["peer"].is_string(), "a line with no peer: {object}");
        }
    }
    objects
        .iter()
        .find(|o| o["peer"] == peer && o["msg"] == "closed")
        .unwrap_or_else(|| panic!("no closed line for {peer}: {objects:?}"))
        .clone()
}

#[test]
fn a_client_that_resets_leaves_one_closed_line_that_says_so() {
    a_reset_is_the_closed_lines_error("epoll");
}

#[test]
fn a_client_that_resets_leaves_one_closed_line_that_says_so_on_io_uring() {
    if crate::io_engine::io_uring_available() {
        a_reset_is_the_closed_lines_error("io_uring");
    }
}

fn a_reset_is_the_closed_lines_error(engine: &str) {
    let mut server = serve_on(engine, &[]);
    let mut client = connect(&server.addr());
    let peer = client.local_addr().expect("addr").to_string();
    // More than the echo can hand back while the client does not read, then a reset.
    let _ = client.write_all(&vec![b'x'; 4 << 20]);
    reset(client);
    server.wait_for_stderr(&["\"closed\""], Duration::from_secs(10));
    let closed = closed_line(&objects(&mut server), &peer);
    let error = closed["error"].as_str().unwrap_or_default();
    // The io_uring engine's send can be cut short by the reset, which it then says.
    assert!(
        error.contains("reset") || error.contains("broken pipe"),
        "{closed}"
    );
    assert!(
        closed["listener"].is_string() && closed["local"].is_string(),
        "{closed}"
    );
}

#[test]
fn an_idle_timeout_is_the_closed_lines_error() {
    let mut server = serve(&["--idle-timeout", "200ms"]);
    let client = connect(&server.addr());
    let peer = client.local_addr().expect("addr").to_string();
    server.wait_for_stderr(&["\"closed\""], Duration::from_secs(10));
    let closed = closed_line(&objects(&mut server), &peer);
    assert!(closed["error"].is_string(), "{closed}");
    drop(client);
}

#[test]
fn a_clean_close_has_no_error() {
    let mut server = serve(&[]);
    let mut client = connect(&server.addr());
    let peer = client.local_addr().expect("addr").to_string();
    client.write_all(b"hi").expect("write");
    client
        .shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    let _ = crate::support::net::read_to_end(&mut client);
    server.wait_for_stderr(&["\"closed\""], Duration::from_secs(10));
    let closed = closed_line(&objects(&mut server), &peer);
    assert!(closed.get("error").is_none(), "{closed}");
}

#[test]
fn a_datagram_line_names_its_listener() {
    let mut cmd = socketkit();
    cmd.args([
        "serve",
        "echo",
        "-l",
        "udp:127.0.0.1:0",
        "-v",
        "--log-format",
        "json",
    ]);
    let mut server = Running::start(cmd, 1);
    let endpoint = server.endpoints()[0].clone();
    let client = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    client
        .send_to(b"ping", endpoint.trim_start_matches("udp:"))
        .expect("send");
    let mut buf = [0u8; 16];
    let _ = client.recv_from(&mut buf).expect("the echo");
    let line = objects(&mut server)
        .into_iter()
        .find(|o| o["msg"] == "datagram")
        .expect("a datagram line");
    assert_eq!(line["listener"], endpoint.as_str(), "{line}");
}

#[test]
fn a_relay_the_client_reset_says_so_on_its_closed_line() {
    let mut target = socketkit();
    target.args(["serve", "echo", "-l", "127.0.0.1:0"]);
    let target = Running::start(target, 1);
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "127.0.0.1:0", "--to", &target.addr()])
        .args(["-v", "--log-format", "json"]);
    let mut forward = Running::start(cmd, 1);
    let mut client = connect(&forward.addr());
    let peer = client.local_addr().expect("addr").to_string();
    let _ = client.write_all(&vec![b'x'; 4 << 20]);
    reset(client);
    forward.wait_for_stderr(&["\"closed\""], Duration::from_secs(10));
    let closed = closed_line(&objects(&mut forward), &peer);
    let error = closed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("reset") || error.contains("broken pipe"),
        "{closed}"
    );
}
