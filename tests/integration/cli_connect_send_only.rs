//! `connect --send-only` against a peer that answers each command as it runs it (redis): the
//! input held by the peer's kernel is not yet run, and a close then resets the connection at
//! the peer's next answer, after which it drops what it had not run. Found by an outside
//! audit with redis (up to 1,636 of 20,000 commands lost, exit 0).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Duration;

use crate::support::net::IO_TIMEOUT;
use crate::support::process::{DEADLINE, Running, socketkit};

/// How many commands the input holds.
const COMMANDS: usize = 3000;

/// Accepts one client and runs each line as it comes: answers it, as redis does, the line
/// numbered `slow` taking 1.5 s (`DEBUG SLEEP`). With `settle`, it first waits for the
/// whole input to arrive (held by its kernel, acknowledged, not yet run). How many it ran
/// before the end of the input or a failure.
fn run_commands(listener: &TcpListener, settle: bool, slow: Option<usize>) -> usize {
    let (stream, _) = listener.accept().expect("accept");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    if settle {
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut answers = stream.try_clone().expect("clone");
    let mut ran = 0;
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        if answers
            .write_all(format!("+OK {line}\r\n").as_bytes())
            .is_err()
        {
            break;
        }
        ran += 1;
        if Some(ran) == slow {
            std::thread::sleep(Duration::from_millis(1500));
        }
        if ran % 100 == 0 {
            // Running takes time: answers go out while the rest waits.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    ran
}

#[test]
fn send_only_lets_a_peer_that_answers_each_command_run_them_all() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port().to_string();
    let input: String = (0..COMMANDS)
        .map(|n| format!("SET key:{n} value\n"))
        .collect();
    for round in 0..3 {
        let mut cmd = socketkit();
        cmd.args(["connect", "--send-only", "127.0.0.1", &port]);
        let mut child = Running::start_with_stdin(cmd, 0, input.clone().into_bytes());
        let ran = run_commands(&listener, true, None);
        let status = child.wait(DEADLINE);
        assert!(
            status.success(),
            "round {round}: {status}: {}",
            child.stderr()
        );
        assert_eq!(
            ran, COMMANDS,
            "round {round}: the peer ran {ran} of {COMMANDS}"
        );
    }
}

/// A command that runs longer than a second halfway through (the peer quiet meanwhile):
/// the quiet ended the wait, and the rest was reset away (an outside review).
#[test]
fn send_only_waits_out_a_slow_command_of_a_peer_that_answers() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port().to_string();
    let line = |n: usize| format!("SET key:{n} value\n");
    let mut cmd = socketkit();
    cmd.args(["connect", "--send-only", "127.0.0.1", &port]);
    let mut child = Running::start(cmd, 0);
    let mut stdin = child.take_stdin();
    // The first half, answered (the slow command last) before the rest of the input comes
    // and ends: as redis answered a file's first read before the second (the review found
    // the wait keyed to answers after the input's end, which these are not).
    let first: String = (0..COMMANDS / 2).map(line).collect();
    let rest: String = (COMMANDS / 2..COMMANDS).map(line).collect();
    let writer = std::thread::spawn(move || {
        stdin.write_all(first.as_bytes()).expect("stdin");
        std::thread::sleep(Duration::from_millis(300));
        stdin.write_all(rest.as_bytes()).expect("stdin");
    });
    let ran = run_commands(&listener, false, Some(COMMANDS / 2));
    writer.join().expect("the writer");
    let status = child.wait(DEADLINE);
    assert!(status.success(), "{status}: {}", child.stderr());
    assert_eq!(ran, COMMANDS, "the peer ran {ran} of {COMMANDS}");
}
