//! Character generator, [RFC 864](https://www.rfc-editor.org/rfc/rfc864): over TCP, the
//! RFC's rotating lines until the client closes; over UDP, one datagram of 0 to 512 bytes of
//! the pattern per datagram received.
//!
//! The pattern is the 95 printable ASCII characters (space to `~`); line *n* holds the 72
//! characters starting at character *n* mod 95, then CR LF. After 95 lines it repeats.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::server::{Connection, DatagramHandler, Handler, Reply};
use crate::socket::Address;

/// Characters in one line, before CR LF.
pub const LINE_CHARS: usize = 72;
/// Printable ASCII characters the pattern cycles through.
pub const PRINTABLE: usize = 95;
/// The most a chargen datagram holds (RFC 864: "between 0 and 512").
pub const MAX_DATAGRAM: usize = 512;

/// Line `n` of the pattern, with its CR LF.
///
/// # Examples
///
/// ```
/// let first = socketkit::services::chargen::line(0);
/// assert!(first.starts_with(b" !\"#$%&'()*+,-./0123456789"));
/// assert!(first.ends_with(b"efg\r\n"));
/// assert_eq!(first.len(), 74);
/// ```
pub fn line(n: usize) -> [u8; LINE_CHARS + 2] {
    let mut line = [0u8; LINE_CHARS + 2];
    for (i, byte) in line.iter_mut().take(LINE_CHARS).enumerate() {
        // (n + i) % 95 is below 95, so the sum stays within printable ASCII.
        *byte = b' ' + ((n + i) % PRINTABLE) as u8;
    }
    line[LINE_CHARS] = b'\r';
    line[LINE_CHARS + 1] = b'\n';
    line
}

/// All 95 lines of one full turn of the pattern (7,030 bytes), built once: TCP chargen writes
/// it whole, again and again, with no work per write.
pub fn cycle() -> &'static [u8] {
    static CYCLE: OnceLock<Vec<u8>> = OnceLock::new();
    CYCLE.get_or_init(|| (0..PRINTABLE).flat_map(line).collect())
}

/// The chargen service.
#[derive(Debug, Clone, Default)]
pub struct Chargen {
    datagrams: Arc<AtomicU64>,
}

impl Handler for Chargen {
    fn call(&self, conn: Connection) -> impl Future<Output = io::Result<()>> + Send + 'static {
        stream(conn)
    }
}

/// The lines until the client closes, what it sends thrown away meanwhile (RFC 864: "any
/// data received is thrown away"): a client that writes as it reads would otherwise fill
/// its send buffer and stall, its writes waiting on a server that never reads.
async fn stream(conn: Connection) -> io::Result<()> {
    let (mut from_client, mut to_client) = conn.split();
    let send = async {
        let cycle = cycle();
        loop {
            match to_client.write_all(cycle).await {
                Ok(()) => {}
                // The client closing is how every chargen session ends.
                Err(err) if is_client_gone(&err) => return Ok(()),
                Err(err) => return Err(err),
            }
        }
    };
    let throw_away = async {
        let mut buf = [0u8; 2048];
        // Its end of stream (or a failed read) ends nothing: the lines go on until the
        // write fails.
        while from_client.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        std::future::pending::<()>().await;
    };
    tokio::select! {
        sent = send => sent,
        () = throw_away => Ok(()),
    }
}

fn is_client_gone(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    )
}

impl DatagramHandler for Chargen {
    fn datagram(&self, _payload: &[u8], peer: &Address, reply: &mut Reply) -> io::Result<()> {
        if !super::answers_datagram_from(peer) {
            return Ok(());
        }
        let n = self.datagrams.fetch_add(1, Ordering::Relaxed);
        let (start, len) = datagram_shape(n);
        let cycle = cycle();
        let start = start * (LINE_CHARS + 2);
        reply.send(&cycle[start..start + len]);
        Ok(())
    }
}

/// Where datagram `n` starts (a line of the pattern) and how long it is (0 to 512 bytes):
/// a fixed scramble of `n`, so lengths vary as the RFC asks without a random source.
fn datagram_shape(n: u64) -> (usize, usize) {
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    x ^= x >> 29;
    let line = (n % PRINTABLE as u64) as usize;
    let len = (x % (MAX_DATAGRAM as u64 + 1)) as usize;
    // A start on line 94 with 512 bytes runs past one cycle: start earlier instead.
    let max_start_line = PRINTABLE - MAX_DATAGRAM.div_ceil(LINE_CHARS + 2);
    (line.min(max_start_line), len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_rotate_by_one_character() {
        assert_eq!(line(1)[0], b'!');
        assert_eq!(line(94)[0], b'~');
        assert_eq!(line(94)[1], b' ');
        assert_eq!(line(95), line(0));
    }

    #[test]
    fn the_cycle_is_95_lines() {
        assert_eq!(cycle().len(), PRINTABLE * (LINE_CHARS + 2));
        assert_eq!(&cycle()[74..148], &line(1));
    }

    #[test]
    fn datagrams_stay_within_512_bytes_and_the_cycle() {
        for n in 0..10_000 {
            let (start, len) = datagram_shape(n);
            assert!(len <= MAX_DATAGRAM);
            assert!(start * 74 + len <= cycle().len());
        }
    }
}
