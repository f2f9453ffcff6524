//! Taking one PROXY header off a blocking [`Socket`] (`listen`, which runs no server), within
//! a deadline and without a byte of what follows it.

use std::io;
use std::time::{Duration, Instant};

use super::{Gather, ProxyHeader, Seen};
use crate::error::{Error, Op};
use crate::socket::Socket;

/// Reads the PROXY header at the start of `socket` within `within`, and leaves every byte
/// after it in the socket for the service.
///
/// It peeks (`MSG_PEEK`) at what has arrived and parses it; while the header is
/// incomplete, every byte seen belongs to it, so those are taken off the socket and the
/// next peek waits for new ones; once it is complete, exactly its length is taken. The
/// socket's own timeout and blocking mode are put back as they were before returning.
///
/// # Errors
///
/// The bytes are not a valid header (`InvalidData`, with the parser's reason), the peer
/// closed before a complete header (`UnexpectedEof`), `within` passed (`TimedOut`), or a
/// receive failed.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use socketkit::proxy_protocol::{ProxyHeader, read_header};
/// let (a, mut b) = socketkit::socket::socketpair()?;
/// a.sendall(b"PROXY TCP4 192.0.2.1 192.0.2.2 5000 80\r\nhello")?;
/// let header = read_header(&mut b, Duration::from_secs(1))?;
/// assert!(matches!(header, ProxyHeader::Proxied { source, .. } if source.port() == 5000));
/// assert_eq!(b.recv(16)?, b"hello");
/// # Ok::<(), socketkit::Error>(())
/// ```
pub fn read_header(socket: &mut Socket, within: Duration) -> crate::Result<ProxyHeader> {
    read_header_with_len(socket, within).map(|(header, _)| header)
}

/// [`read_header`], with the header's length in bytes: for a byte count of what crossed the
/// socket, which includes it.
///
/// # Errors
///
/// As [`read_header`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use socketkit::proxy_protocol::read_header_with_len;
/// let (a, mut b) = socketkit::socket::socketpair()?;
/// a.sendall(b"PROXY UNKNOWN\r\nhello")?;
/// let (_, len) = read_header_with_len(&mut b, Duration::from_secs(1))?;
/// assert_eq!(len, 15);
/// # Ok::<(), socketkit::Error>(())
/// ```
pub fn read_header_with_len(
    socket: &mut Socket,
    within: Duration,
) -> crate::Result<(ProxyHeader, usize)> {
    let before = socket.timeout();
    // The deadline's timeouts put the socket in blocking mode (Socket::set_timeout).
    let blocking = socket.blocking()?;
    let result = read_until(socket, crate::socket::deadline_in(within));
    let restored = match blocking {
        true => socket.set_timeout(before),
        false => socket.set_blocking(false),
    };
    let header = result?;
    restored?;
    Ok(header)
}

fn read_until(socket: &mut Socket, deadline: Instant) -> crate::Result<(ProxyHeader, usize)> {
    let mut gather = Gather::new();
    let mut len = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(failed(
                io::ErrorKind::TimedOut,
                "no complete header in time",
            ));
        }
        socket.set_timeout(Some(left))?;
        let seen = match socket.peek(gather.room()) {
            Ok(seen) => seen,
            // The socket's timeout counts in clock ticks and can end a little before the
            // deadline: the loop waits out what is left of it.
            Err(err) if err.io_error().kind() == io::ErrorKind::TimedOut => continue,
            Err(err) => return Err(err),
        };
        if seen == 0 {
            return Err(failed(
                io::ErrorKind::UnexpectedEof,
                "the connection ended before a complete header",
            ));
        }
        let (seen, header_bytes) = gather
            .seen(seen)
            .map_err(|err| failed(io::ErrorKind::InvalidData, err.to_string()))?;
        take(socket, header_bytes)?;
        len += header_bytes.len();
        if let Seen::Complete(header) = seen {
            return Ok((header, len));
        }
    }
}

/// Takes `buf.len()` bytes that a peek has shown are there.
fn take(socket: &Socket, mut buf: &mut [u8]) -> crate::Result<()> {
    while !buf.is_empty() {
        let n = socket.recv_into(buf)?;
        if n == 0 {
            return Err(failed(io::ErrorKind::UnexpectedEof, "the header was cut"));
        }
        buf = &mut buf[n..];
    }
    Ok(())
}

fn failed(kind: io::ErrorKind, why: impl Into<String>) -> Error {
    Error::new(
        Op::Receive,
        "a PROXY header",
        io::Error::new(kind, why.into()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socket::socketpair;

    #[test]
    fn a_header_in_pieces_is_taken_and_the_rest_stays() -> crate::Result<()> {
        let (a, mut b) = socketpair()?;
        let v2 = crate::proxy_protocol::encode_v2(
            "[2001:db8::5]:6000".parse().expect("addr"),
            "[2001:db8::1]:443".parse().expect("addr"),
        );
        let sender = std::thread::spawn(move || {
            for byte in &v2 {
                a.sendall(&[*byte]).expect("send");
            }
            a.sendall(b"rest").expect("send");
            a
        });
        let header = read_header(&mut b, Duration::from_secs(5))?;
        let a = sender.join().expect("the sender ends");
        let ProxyHeader::Proxied { source, .. } = header else {
            panic!("{header:?}");
        };
        assert_eq!(source.to_string(), "[2001:db8::5]:6000");
        drop(a);
        let mut rest = [0u8; 8];
        let mut got = Vec::new();
        loop {
            let n = b.recv_into(&mut rest)?;
            if n == 0 {
                break;
            }
            got.extend_from_slice(&rest[..n]);
        }
        assert_eq!(got, b"rest");
        assert_eq!(b.timeout(), None, "the timeout is put back");
        Ok(())
    }

    #[test]
    fn a_non_blocking_socket_stays_non_blocking() -> crate::Result<()> {
        let (a, mut b) = socketpair()?;
        a.sendall(b"PROXY UNKNOWN\r\nrest")?;
        b.set_blocking(false)?;
        assert_eq!(
            read_header(&mut b, Duration::from_secs(1))?,
            ProxyHeader::Local
        );
        assert!(!b.blocking()?);
        assert_eq!(b.recv(16)?, b"rest");
        Ok(())
    }

    #[test]
    fn garbage_silence_and_an_early_end_are_errors() -> crate::Result<()> {
        let (a, mut b) = socketpair()?;
        a.sendall(b"GET / HTTP/1.1\r\n")?;
        let err = read_header(&mut b, Duration::from_secs(1)).expect_err("garbage");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);

        let (a, mut b) = socketpair()?;
        a.sendall(b"PROXY TCP4 1.2.3.4")?;
        let started = Instant::now();
        let err = read_header(&mut b, Duration::from_millis(200)).expect_err("late");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(started.elapsed() >= Duration::from_millis(200));

        let (a, mut b) = socketpair()?;
        a.sendall(b"PROXY TCP4")?;
        drop(a);
        let err = read_header(&mut b, Duration::from_secs(1)).expect_err("ended");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        Ok(())
    }
}
