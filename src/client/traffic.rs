//! What netcat users bolt onto a bridge: `-C` (LF → CRLF on the way out), `-o FILE` (a copy of
//! both directions' bytes) and `-x FILE` (a hex dump of both directions, each line marked with
//! its direction and the offset in that direction's stream). They wrap the bridge's input
//! reader and output writer, so the bridge itself stays a byte mover; the output then goes
//! through a copy rather than `splice(2)`, since the bytes have to be seen.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};

/// Which way bytes went, as a traffic log marks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// From us to the peer: `>`.
    Sent,
    /// From the peer to us: `<`.
    Received,
}

/// How a traffic log writes what passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// The bytes themselves, both directions interleaved as they pass (`ncat -o`).
    Text,
    /// A hex dump: `> 00000010  68 65 6c 6c 6f 0a  |hello.|`, one line per 16 bytes
    /// (`ncat -x`, with a direction mark).
    Hex,
}

/// A log file shared by both directions of a bridge; clone it for each side.
#[derive(Debug, Clone)]
pub struct TrafficLog {
    inner: Arc<Mutex<LogState>>,
}

#[derive(Debug)]
struct LogState {
    file: File,
    format: LogFormat,
    sent: u64,
    received: u64,
}

impl TrafficLog {
    /// A log writing to `file` in `format`.
    pub fn new(file: File, format: LogFormat) -> TrafficLog {
        TrafficLog {
            inner: Arc::new(Mutex::new(LogState {
                file,
                format,
                sent: 0,
                received: 0,
            })),
        }
    }

    /// Records `bytes` going `way`. A log that cannot be written is reported once per
    /// failure and does not stop the traffic.
    pub fn record(&self, way: Way, bytes: &[u8]) {
        // A poisoned lock means a writer panicked mid-line; the file is still usable.
        let mut state = self
            .inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let offset = match way {
            Way::Sent => &mut state.sent,
            Way::Received => &mut state.received,
        };
        let start = *offset;
        *offset += bytes.len() as u64;
        let written = match state.format {
            LogFormat::Text => state.file.write_all(bytes),
            LogFormat::Hex => {
                let text = hex_dump(way, start, bytes);
                state.file.write_all(text.as_bytes())
            }
        };
        if let Err(err) = written {
            tracing::warn!(
                "writing the traffic log failed: {}",
                crate::error::describe(&err)
            );
        }
    }
}

/// The hex dump lines of `bytes`, the first at `offset` in its direction's stream.
///
/// # Examples
///
/// ```
/// use socketkit::client::traffic::{Way, hex_dump};
/// let dump = hex_dump(Way::Received, 16, b"hi\n");
/// assert!(dump.starts_with("< 00000010  68 69 0a "));
/// assert!(dump.ends_with(" |hi.|\n"));
/// ```
pub fn hex_dump(way: Way, offset: u64, bytes: &[u8]) -> String {
    let mark = match way {
        Way::Sent => '>',
        Way::Received => '<',
    };
    let mut out = String::new();
    for (n, line) in bytes.chunks(16).enumerate() {
        let _ = write!(out, "{mark} {:08x} ", offset + 16 * n as u64);
        for (i, byte) in line.iter().enumerate() {
            // The extra space after the eighth byte, as hexdump -C groups them.
            let gap = if i == 8 { "  " } else { " " };
            let _ = write!(out, "{gap}{byte:02x}");
        }
        let missing = 16 - line.len();
        let pad = missing * 3 + usize::from(line.len() <= 8);
        out.push_str(&" ".repeat(pad + 2));
        out.push('|');
        out.extend(line.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '.'
            }
        }));
        out.push_str("|\n");
    }
    out
}

/// The bridge's input with the taps applied: `-C` and the log of what is sent.
#[derive(Debug)]
pub struct TappedReader<R> {
    inner: R,
    crlf: bool,
    log: Option<TrafficLog>,
    /// The byte before this read's first one was a CR, so an LF starting it is not doubled.
    after_cr: bool,
    /// Converted bytes that did not fit the caller's buffer.
    pending: Vec<u8>,
}

impl<R: Read> TappedReader<R> {
    /// Wraps `inner`: with `crlf`, each LF not already after a CR goes out as CRLF; with
    /// `log`, every byte handed on is recorded as sent.
    pub fn new(inner: R, crlf: bool, log: Option<TrafficLog>) -> TappedReader<R> {
        TappedReader {
            inner,
            crlf,
            log,
            after_cr: false,
            pending: Vec::new(),
        }
    }

    fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.pending.is_empty() {
            let n = self.pending.len().min(buf.len());
            buf[..n].copy_from_slice(&self.pending[..n]);
            self.pending.drain(..n);
            return Ok(n);
        }
        if !self.crlf {
            return self.inner.read(buf);
        }
        // Read at most half, so the CRLF form of what was read fits in most cases.
        let half = (buf.len() / 2).max(1);
        let mut raw = vec![0u8; half];
        let n = self.inner.read(&mut raw)?;
        let mut converted = Vec::with_capacity(n * 2);
        for &byte in &raw[..n] {
            if byte == b'\n' && !self.after_cr {
                converted.push(b'\r');
            }
            converted.push(byte);
            self.after_cr = byte == b'\r';
        }
        let fits = converted.len().min(buf.len());
        buf[..fits].copy_from_slice(&converted[..fits]);
        self.pending = converted.split_off(fits);
        Ok(fits)
    }
}

impl<R: Read> Read for TappedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.fill(buf)?;
        if let Some(log) = &self.log {
            log.record(Way::Sent, &buf[..n]);
        }
        Ok(n)
    }
}

/// The bridge's output with the log of what is received.
#[derive(Debug)]
pub struct TappedWriter<W> {
    inner: W,
    log: TrafficLog,
}

impl<W: Write> TappedWriter<W> {
    /// Wraps `inner`, recording every byte written to it as received.
    pub fn new(inner: W, log: TrafficLog) -> TappedWriter<W> {
        TappedWriter { inner, log }
    }
}

impl<W: Write> Write for TappedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Logged as it arrived, even if the output has gone away since.
        self.log.record(Way::Received, buf);
        self.inner.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_doubles_no_existing_cr() {
        let input: &[u8] = b"a\nb\r\nc\n";
        let mut reader = TappedReader::new(input, true, None);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"a\r\nb\r\nc\r\n");
    }

    #[test]
    fn a_crlf_split_over_reads_stays_one() {
        // One byte per read: the CR and its LF arrive in different reads.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let Some((&first, rest)) = self.0.split_first() else {
                    return Ok(0);
                };
                buf[0] = first;
                self.0 = rest;
                Ok(1)
            }
        }
        let mut reader = TappedReader::new(Trickle(b"x\r\ny\n"), true, None);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"x\r\ny\r\n");
    }

    #[test]
    fn hex_lines_are_aligned_and_marked() {
        let dump = hex_dump(Way::Sent, 0, b"0123456789abcdefXY");
        let lines: Vec<&str> = dump.lines().collect();
        assert_eq!(
            lines[0],
            "> 00000000  30 31 32 33 34 35 36 37  38 39 61 62 63 64 65 66  |0123456789abcdef|"
        );
        // The text column starts where a full line's does.
        assert_eq!(lines[1], format!("> 00000010  58 59{}|XY|", " ".repeat(45)));
        assert_eq!(lines[0].find('|'), lines[1].find('|'));
    }
}
