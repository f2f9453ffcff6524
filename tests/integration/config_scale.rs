//! Configurations far larger than the examples: what a user meets when one grows. Found
//! by an outside audit of configuration scale (2026-12-07).

use std::io::{Read, Write};

use crate::support::process::{DEADLINE, Running, socketkit, with_rlimit};

/// Three hundred thousand SOCKS users are read at once (the list was searched for each name
/// as it was read: 15 s for 100,000, past any start-up deadline for these), and the last one
/// logs in.
#[test]
fn three_hundred_thousand_socks_users_start_and_log_in() {
    let dir = tempfile::tempdir().expect("temp dir");
    let users = dir.path().join("users");
    let text: String = (0..300_000).map(|n| format!("user{n}:pw{n}\n")).collect();
    std::fs::write(&users, text).expect("write the users");
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "127.0.0.1:0", "--socks", "--socks-users"])
        .arg(&users);
    let proxy = Running::start(cmd, 1);
    let mut client = std::net::TcpStream::connect(proxy.addr()).expect("connect");
    client.set_read_timeout(Some(DEADLINE)).expect("a timeout");
    client.write_all(&[5, 1, 2]).expect("the greeting");
    let mut method = [0; 2];
    client.read_exact(&mut method).expect("the method");
    let (user, password) = ("user299999", "pw299999");
    let mut request = vec![1, 10];
    request.extend_from_slice(user.as_bytes());
    request.push(8);
    request.extend_from_slice(password.as_bytes());
    client.write_all(&request).expect("the user");
    let mut answer = [0; 2];
    client.read_exact(&mut answer).expect("the answer");
    assert_eq!(answer, [1, 0]);
}

/// 150 listeners under a descriptor limit of 1024: `auto` starts io_uring workers only up
/// to a quarter of the limit and serves the rest on epoll, so that the server, once ready,
/// still has descriptors for its clients (the rings took all but one, and it held one
/// connection of 50).
#[test]
fn many_listeners_leave_descriptors_for_clients() {
    let mut cmd = socketkit();
    cmd.args(["serve", "echo"]);
    for _ in 0..150 {
        cmd.args(["-l", "127.0.0.1:0"]);
    }
    with_rlimit(&mut cmd, libc::RLIMIT_NOFILE, 1024);
    let server = Running::start(cmd, 150);
    let endpoints: Vec<String> = server
        .endpoints()
        .iter()
        .map(|endpoint| endpoint.trim_start_matches("tcp:").to_owned())
        .collect();
    let mut clients: Vec<std::net::TcpStream> = (0..50)
        .map(|n| {
            let client =
                std::net::TcpStream::connect(&endpoints[n % endpoints.len()]).expect("connect");
            client.set_read_timeout(Some(DEADLINE)).expect("a timeout");
            client
        })
        .collect();
    for (n, client) in clients.iter_mut().enumerate() {
        client.write_all(b"ping").expect("send");
        let mut echo = [0; 4];
        client
            .read_exact(&mut echo)
            .unwrap_or_else(|err| panic!("client {n}: {err}\n{}", server.stderr()));
        assert_eq!(&echo, b"ping");
    }
}

/// A rule file with a line of a megabyte: the `error:` line at start quotes its beginning
/// only (it held all of it), and a SIGHUP that finds it says why it kept the old rules
/// (that warning was too long for the log's queue, and lost).
#[test]
fn a_long_bad_line_is_quoted_short_at_start_and_on_reload() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = dir.path().join("deny");
    let bad = format!("10.0.0.0/8\n{}\n", "x".repeat(1 << 20));
    std::fs::write(&rules, &bad).expect("write the rules");
    let mut cmd = socketkit();
    cmd.args(["serve", "-l", "127.0.0.1:0", "--deny-file"])
        .arg(&rules);
    let out = crate::support::process::run(cmd, Vec::new(), DEADLINE);
    assert_eq!(
        out.code(),
        2,
        "{}",
        &out.stderr[..out.stderr.len().min(300)]
    );
    assert!(
        out.stderr.len() < 1000,
        "{} bytes of stderr",
        out.stderr.len()
    );
    assert!(
        out.stderr.contains(":2: invalid network 'xxx"),
        "{}",
        out.stderr
    );

    std::fs::write(&rules, "10.0.0.0/8\n").expect("write the rules");
    let mut cmd = socketkit();
    cmd.args(["serve", "-l", "127.0.0.1:0", "--deny-file"])
        .arg(&rules);
    let server = Running::start(cmd, 1);
    std::fs::write(&rules, &bad).expect("write the rules");
    server.signal(libc::SIGHUP);
    server.wait_for_stderr(&["not reloaded, the old ones stay"], DEADLINE);
}
