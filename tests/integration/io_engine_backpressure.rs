//! io_uring echo with clients that send and never read. A worker receives into 64 shared
//! buffers of 16 KiB, and a send to a client that does not read never completes: each such
//! client may hold a few buffers, and when they run out what the connections hold is
//! copied out (`src/server/ring/worker/spill.rs`), so that any number of them hold back
//! only themselves — and each still gets every byte it sent back, in order, once it reads.
//! What each holds is bounded: its receive takes at most the buffers it may still hold (an
//! outside audit saw one multishot receive fill ~1 MiB of buffers for one such client).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::{Duration, Instant};

use crate::io_engine::{
    echo_round_trip, io_uring_available, io_uring_unix_echo, serve_on_one_ring,
};
use crate::support::net::{connect, hash, payload};
use crate::support::process::DEADLINE;

/// A client socket, TCP or Unix.
trait Hog: Read + Write + Send + 'static {
    fn set_nonblocking(&self, on: bool);
    fn shut_write(&self);
    fn set_read_timeout(&self, timeout: Duration);
}

impl Hog for TcpStream {
    fn set_nonblocking(&self, on: bool) {
        TcpStream::set_nonblocking(self, on).expect("nonblocking");
    }
    fn shut_write(&self) {
        self.shutdown(Shutdown::Write).expect("half-close");
    }
    fn set_read_timeout(&self, timeout: Duration) {
        TcpStream::set_read_timeout(self, Some(timeout)).expect("read timeout");
    }
}

impl Hog for UnixStream {
    fn set_nonblocking(&self, on: bool) {
        UnixStream::set_nonblocking(self, on).expect("nonblocking");
    }
    fn shut_write(&self) {
        self.shutdown(Shutdown::Write).expect("half-close");
    }
    fn set_read_timeout(&self, timeout: Duration) {
        UnixStream::set_read_timeout(self, Some(timeout)).expect("read timeout");
    }
}

/// Sends `data` on every hog, reading nothing, until none has taken a byte for 300 ms (the
/// server has stopped taking theirs) or 8 s have passed; returns how much each sent.
fn fill<H: Hog>(hogs: &mut [H], data: &[u8]) -> Vec<usize> {
    for hog in hogs.iter() {
        hog.set_nonblocking(true);
    }
    let mut sent = vec![0; hogs.len()];
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut moved_at = Instant::now();
    while moved_at.elapsed() < Duration::from_millis(300) && Instant::now() < deadline {
        let mut moved = false;
        for (hog, sent) in hogs.iter_mut().zip(&mut sent) {
            let end = (*sent + 65536).min(data.len());
            match hog.write(&data[*sent..end]) {
                Ok(n) => {
                    *sent += n;
                    moved |= n > 0;
                }
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(err) => panic!("hog send: {err}"),
            }
        }
        if moved {
            moved_at = Instant::now();
        } else {
            thread::sleep(Duration::from_millis(5));
        }
    }
    sent
}

/// Each hog half-closes and reads: every byte it sent comes back, in order.
fn read_back<H: Hog>(hogs: Vec<H>, sent: &[usize], data: &[u8]) {
    let readers: Vec<_> = hogs
        .into_iter()
        .zip(sent)
        .map(|(mut hog, &sent)| {
            let want = hash(&data[..sent]);
            thread::spawn(move || {
                hog.set_nonblocking(false);
                hog.set_read_timeout(DEADLINE);
                hog.shut_write();
                let mut echoed = Vec::new();
                hog.read_to_end(&mut echoed)
                    .expect("the hog reads its echo");
                (echoed.len(), hash(&echoed) == want)
            })
        })
        .collect();
    for (i, (reader, &sent)) in readers.into_iter().zip(sent).enumerate() {
        let (len, same) = reader.join().expect("reader");
        assert_eq!(len, sent, "hog {i}: bytes echoed");
        assert!(same, "hog {i}: the echo differs from what it sent");
    }
}

/// 40 clients that send and do not read: more than a worker's buffers can hold for them.
const HOGS: usize = 40;

/// `hogs` TCP clients on one ring send `len` bytes each and read nothing; `others` clients
/// are echoed meanwhile, and then each hog gets every byte it sent back, in order.
fn hogs_hold_back_only_themselves(hogs: usize, len: usize, others: usize) {
    if !io_uring_available() {
        return;
    }
    let server = serve_on_one_ring(&["echo"]);
    let addr = server.addr();
    let data = payload(len);
    let mut hogs: Vec<_> = (0..hogs).map(|_| connect(&addr)).collect();
    let sent = fill(&mut hogs, &data);
    assert!(
        sent[0] > 1 << 20,
        "the first hog sent only {} bytes",
        sent[0]
    );
    for i in 0..others {
        let data = format!("client {i}").into_bytes();
        assert_eq!(echo_round_trip(&addr, data.clone()), data, "client {i}");
    }
    read_back(hogs, &sent, &data);
}

#[test]
fn io_uring_echo_client_that_does_not_read_holds_back_only_itself() {
    hogs_hold_back_only_themselves(1, 64 << 20, 50);
}

#[test]
fn io_uring_echo_serves_everyone_else_while_many_clients_do_not_read() {
    hogs_hold_back_only_themselves(HOGS, 16 << 20, 20);
}

#[test]
fn io_uring_unix_echo_serves_everyone_else_while_many_clients_do_not_read() {
    let Some((_dir, path, _server)) = io_uring_unix_echo() else {
        return;
    };
    let unix = || UnixStream::connect(&path).expect("connect");
    let data = payload(16 << 20);
    let mut hogs: Vec<_> = (0..HOGS).map(|_| unix()).collect();
    let sent = fill(&mut hogs, &data);
    for i in 0..20 {
        let want = format!("client {i}").into_bytes();
        let mut client = unix();
        Hog::set_read_timeout(&client, DEADLINE);
        client.write_all(&want).expect("send");
        client.shut_write();
        let mut echoed = Vec::new();
        client
            .read_to_end(&mut echoed)
            .expect("echo within the deadline");
        assert_eq!(echoed, want, "client {i}");
    }
    read_back(hogs, &sent, &data);
}

/// The server's anonymous memory, in KiB (`RssAnon` of `/proc/PID/status`).
fn anonymous_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("RssAnon:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("RssAnon")
}

/// 20 clients that send and do not read cost the server ~64 KiB each of its own memory,
/// not the up to 1 MiB each that a receive filling buffer after buffer made them (17–28 MB
/// for 40 such clients, measured by the audit; ~2 MB after).
#[test]
fn io_uring_echo_clients_that_do_not_read_hold_little_of_the_servers_memory() {
    if !io_uring_available() {
        return;
    }
    let server = serve_on_one_ring(&["echo"]);
    let addr = server.addr();
    // Warm: the first connections allocate the worker's tables.
    for i in 0..4 {
        let data = format!("warm {i}").into_bytes();
        assert_eq!(echo_round_trip(&addr, data.clone()), data);
    }
    let before = anonymous_kib(server.pid());
    let data = payload(16 << 20);
    let mut hogs: Vec<_> = (0..20).map(|_| connect(&addr)).collect();
    let sent = fill(&mut hogs, &data);
    let grown = anonymous_kib(server.pid()).saturating_sub(before);
    assert!(
        grown < 8 * 1024,
        "20 hogs took {grown} KiB of the server's memory"
    );
    read_back(hogs, &sent, &data);
}
