//! The epoll engine's reads on a runtime of several workers: a read that emptied the socket
//! cleared tokio's read readiness *after* it, so bytes that arrived during the read (a
//! newer event, delivered by another worker's poll) were forgotten with it, and the
//! connection waited for an event that had come: 1–3 of 60 pipelined echo streams stalled
//! for good under `--workers 4`, and discard connections stayed open with bytes unread.
//! Found by an outside audit of resources under churn; the io_uring engine was whole.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::thread;
use std::time::Duration;

use crate::support::net::{Fnv, connect, payload};
use crate::support::process::{Running, socketkit};

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
fn client(addr: &str, seed: u64) -> Result<(), String> {
    let mut draw = Draw(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let messages: Vec<usize> = (0..3 + draw.below(6))
        .map(|_| SIZES[draw.below(SIZES.len())])
        .collect();
    let total: usize = messages.iter().sum();
    let stream = connect(addr);
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|err| err.to_string())?;
    let mut writer = stream.try_clone().map_err(|err| err.to_string())?;
    let pieces = [1, 100, 4096, 65_536];
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
        writer.shutdown(Shutdown::Write)?;
        Ok(sent.finish())
    });
    let mut reader = stream;
    let mut received = Fnv::default();
    let mut got = 0;
    let mut buf = vec![0u8; 32 * 1024];
    let mut reads = 0u32;
    while got < total {
        let n = reader
            .read(&mut buf)
            .map_err(|err| format!("{err} after {got} of {total} bytes"))?;
        if n == 0 {
            return Err(format!("the echo ended after {got} of {total} bytes"));
        }
        received.update(&buf[..n]);
        got += n;
        reads += 1;
        if reads.is_multiple_of(16) {
            thread::sleep(Duration::from_millis(1)); // a slow reader now and then
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

#[test]
fn pipelined_echo_streams_on_four_epoll_workers_all_come_back_whole() {
    const CLIENTS: u64 = 60;
    let mut cmd = socketkit();
    cmd.args(["serve", "echo", "--io-engine", "epoll", "--workers", "4"])
        .args(["-l", "127.0.0.1:0"]);
    let server = Running::start(cmd, 1);
    for round in 0..6 {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let addr = server.addr();
                thread::spawn(move || client(&addr, round * CLIENTS + i + 1))
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
