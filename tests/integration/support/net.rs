//! Loopback helpers: bounded reads and connections with timeouts.

use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

/// How long a test waits on one socket operation.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP connection to `addr` with read and write timeouts set.
pub fn connect(addr: &str) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap_or_else(|err| panic!("connect {addr}: {err}"));
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("set timeout");
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .expect("set timeout");
    stream
}

/// Everything `stream` sends until it closes, bounded by the read timeout.
pub fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    stream
        .read_to_end(&mut all)
        .expect("read to end within the timeout");
    all
}

/// A deterministic pseudo-random payload of `len` bytes (xorshift), so a corrupted or
/// reordered byte is caught.
pub fn payload(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}
