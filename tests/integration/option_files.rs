//! The files options name, as a mistaken or hostile path makes them (an outside audit of
//! every file socketkit touches): a rule file turned into a FIFO before a SIGHUP held the
//! reload — and a runtime thread — until something wrote to it (the server stopped
//! answering on epoll, and SIGTERM no longer ended it); a file of hundreds of MB was read
//! whole (and its bad line printed whole); a byte order mark became part of the first SOCKS
//! user's name.

use std::time::Duration;

use crate::support::TestResult;
use crate::support::net::{IO_TIMEOUT, connect, read_to_end};
use crate::support::process::{DEADLINE, Running, run, socketkit};

#[test]
fn a_reload_of_a_rule_file_turned_fifo_fails_and_the_server_goes_on() -> TestResult {
    let dir = tempfile::tempdir()?;
    let rules = dir.path().join("allowed");
    std::fs::write(&rules, "127.0.0.1/32\n")?;
    let mut cmd = socketkit();
    cmd.args(["serve", "-l", "127.0.0.1:0", "--allow-file"])
        .arg(&rules);
    let mut server = Running::start(cmd, 1);
    std::fs::remove_file(&rules)?;
    let made = std::process::Command::new("mkfifo").arg(&rules).status()?;
    assert!(made.success());
    server.signal(libc::SIGHUP);
    server.wait_for_stderr(
        &["not reloaded, the old ones stay", "not a regular file"],
        IO_TIMEOUT,
    );
    assert_eq!(read_to_end(&mut connect(&server.addr())), "你好".as_bytes());
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait(Duration::from_secs(10)).code(), Some(0));
    Ok(())
}

#[test]
fn a_rule_file_past_16_mib_is_refused_at_start() -> TestResult {
    let dir = tempfile::tempdir()?;
    let rules = dir.path().join("huge");
    std::fs::write(&rules, "# nothing but a comment\n".repeat(750_000))?;
    let mut cmd = socketkit();
    cmd.args(["serve", "-l", "127.0.0.1:0", "--allow-file"])
        .arg(&rules);
    let out = run(cmd, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("larger than 16 MiB"), "{}", out.stderr);
    assert!(out.stderr.len() < 500, "{}", out.stderr);
    Ok(())
}

#[test]
fn a_byte_order_mark_is_no_part_of_the_first_socks_user() -> TestResult {
    let dir = tempfile::tempdir()?;
    let users = dir.path().join("users");
    std::fs::write(&users, "\u{feff}alice:pw\n")?;
    let greeting = {
        let mut cmd = socketkit();
        cmd.args(["serve", "-l", "127.0.0.1:0"]);
        Running::start(cmd, 1)
    };
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "127.0.0.1:0", "--socks", "--socks-users"])
        .arg(&users);
    let proxy = Running::start(cmd, 1);
    let mut client = socketkit();
    client
        .args(["connect", "--proxy"])
        .arg(format!("socks5://alice:pw@{}", proxy.addr()))
        .arg(greeting.addr());
    let out = run(client, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout, "你好".as_bytes());
    Ok(())
}
