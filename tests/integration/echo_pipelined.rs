//! Sixty clients at once, each writing its messages in pieces while it reads the echo
//! (slowly now and then), every stream checked whole, on each engine where it broke:
//! - the epoll engine on several workers: a read that emptied the socket cleared tokio's
//!   read readiness *after* it, so bytes that arrived during the read (a newer event,
//!   delivered by another worker's poll) were forgotten, and the connection waited for good
//!   (1–3 of 60 streams under `--workers 4`; discard connections stayed open, bytes unread);
//! - the io_uring engine on a Unix socket: when its buffers ran out, the cancel of a send the
//!   kernel ran on a thread of its own ended it with `EINTR`, not `ECANCELED`, taken for a
//!   failure: 1–3 of 60 streams ended short with a clean end of stream.
//! Found by an outside audit of resources under churn.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::Duration;

use crate::io_engine::io_uring_unix_echo;
use crate::support::net::{Fnv, connect, payload};
use crate::support::process::{Running, socketkit};

/// A client's connection, of either transport: one handle writes while another reads.
trait Duplex: Read + Write + Send + Sized + 'static {
    fn another(&self) -> io::Result<Self>;
    fn end_writes(&self) -> io::Result<()>;
    fn read_within(&self, limit: Duration) -> io::Result<()>;
}

/// The two std streams have the same methods, under no common trait.
macro_rules! duplex {
    ($($stream:ty),*) => {$(
        impl Duplex for $stream {
            fn another(&self) -> io::Result<Self> {
                self.try_clone()
            }
            fn end_writes(&self) -> io::Result<()> {
                self.shutdown(Shutdown::Write)
            }
            fn read_within(&self, limit: Duration) -> io::Result<()> {
                self.set_read_timeout(Some(limit))
            }
        }
    )*};
}

duplex!(TcpStream, UnixStream);

/// Sizes around the buffers' and the socket's boundaries, and some large.
const SIZES: [usize; 10] = [
    1, 2, 4095, 4096, 4097, 16_384, 65_535, 65_536, 65_537, 300_000,
];

/// A small deterministic generator, one per client.
struct Draw(u64);

impl Draw {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % n as u64).unwrap_or(0)
    }
}

/// One client: writes its messages in pieces of varied size while another thread reads the
/// echo (slowly now and then); returns what came back against what was sent.
fn client<S: Duplex>(stream: S, seed: u64) -> Result<(), String> {
    let mut draw = Draw(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    // One client in three reads in small pieces, pausing now and then; one in two reads
    // nothing for a while first: the server's sends are cut short, and its buffers pile up.
    let slow = seed.is_multiple_of(3);
    let paused = seed.is_multiple_of(2);
    let messages: Vec<usize> = (0..3 + draw.below(6))
        .map(|_| SIZES[draw.below(SIZES.len())])
        .collect();
    let total: usize = messages.iter().sum();
    stream
        .read_within(Duration::from_secs(10))
        .map_err(|err| err.to_string())?;
    let mut writer = stream.another().map_err(|err| err.to_string())?;
    let mut draw_read = Draw(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1);
    let pieces = [1, 100, 4096, 65_536, usize::MAX];
    let sending = thread::spawn(move || -> std::io::Result<u64> {
        let mut sent = Fnv::default();
        for size in messages {
            let data = payload(size);
            sent.update(&data);
            let mut at = 0;
            while at < size {
                let piece = pieces[draw.below(pieces.len())].min(size - at);
                writer.write_all(&data[at..at + piece])?;
                at += piece;
            }
        }
        writer.end_writes()?;
        Ok(sent.finish())
    });
    let mut reader = stream;
    let mut received = Fnv::default();
    let mut got = 0;
    let mut buf = vec![0u8; 256 * 1024];
    let read_sizes = [1, 512, 4096, 65_536];
    if paused {
        thread::sleep(Duration::from_millis(400));
    }
    let mut reads = 0u32;
    while got < total {
        let size = if slow {
            read_sizes[draw_read.below(read_sizes.len())]
        } else {
            buf.len()
        };
        let n = reader
            .read(&mut buf[..size])
            .map_err(|err| format!("{err} after {got} of {total} bytes"))?;
        if n == 0 {
            return Err(format!("the echo ended after {got} of {total} bytes"));
        }
        received.update(&buf[..n]);
        got += n;
        reads += 1;
        if slow && reads.is_multiple_of(50) {
            thread::sleep(Duration::from_millis(5));
        }
    }
    let sent = sending
        .join()
        .map_err(|_| "the writer panicked".to_owned())?
        .map_err(|err| err.to_string())?;
    if sent != received.finish() {
        return Err(format!("{total} bytes came back changed"));
    }
    Ok(())
}

/// Three rounds of sixty clients at once, each connected by `connect`.
fn rounds<S: Duplex>(connect: impl Fn() -> S) {
    const CLIENTS: u64 = 60;
    for round in 0..3 {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let stream = connect();
                thread::spawn(move || client(stream, round * CLIENTS + i + 1))
            })
            .collect();
        let failures: Vec<String> = clients
            .into_iter()
            .enumerate()
            .filter_map(|(i, client)| match client.join() {
                Ok(Ok(())) => None,
                Ok(Err(err)) => Some(format!("client {i}: {err}")),
                Err(_) => Some(format!("client {i} panicked")),
            })
            .collect();
        assert!(failures.is_empty(), "round {round}: {failures:#?}");
    }
}

#[test]
fn pipelined_echo_streams_on_four_epoll_workers_all_come_back_whole() {
    let mut cmd = socketkit();
    cmd.args(["serve", "echo", "--io-engine", "epoll", "--workers", "4"])
        .args(["-l", "127.0.0.1:0"]);
    let server = Running::start(cmd, 1);
    rounds(|| connect(&server.addr()));
}

#[test]
fn pipelined_echo_streams_on_an_io_uring_unix_socket_all_come_back_whole() {
    let Some((_dir, path, _server)) = io_uring_unix_echo() else {
        return;
    };
    rounds(|| UnixStream::connect(&path).expect("connected"));
}
