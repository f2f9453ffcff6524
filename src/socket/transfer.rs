//! Moving bytes: `send`, `sendall`, `recv`, `recv_into` and `peek` on a connected socket,
//! `sendto` and `recvfrom` for datagrams (with `peek_datagram_len` and `recvfrom_trunc`
//! to receive them whole, or know they were cut), and `Read`/`Write` over the same calls.

use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::time::Instant;

use super::{Address, Socket, ToAddress};
use crate::error::{Error, Op, Result};

impl Socket {
    /// Sends bytes with `send(2)` and returns how many were sent (Python: `s.send(data)`).
    ///
    /// # Caveats
    ///
    /// A stream socket may send fewer bytes than given; use [`Socket::sendall`] to send all.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = socketkit::socket::socketpair()?;
    /// assert_eq!(a.send(b"hi")?, 2);
    /// assert_eq!(b.recv(16)?, b"hi");
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    pub fn send(&self, data: &[u8]) -> Result<usize> {
        // `MSG_NOSIGNAL`: a peer that has closed is an error here, as in std and Python,
        // not a SIGPIPE that kills a host program whose SIGPIPE is at its default.
        self.inner
            .send_with_flags(data, libc::MSG_NOSIGNAL)
            .map_err(|err| self.error_at_peer(Op::Send, self.timed_out(err)))
    }

    /// Sends every byte of `data`, calling `send(2)` until done (Python: `s.sendall(data)`).
    ///
    /// With a timeout set ([`Socket::set_timeout`]), it bounds the whole call, as in Python
    /// 3.5 and later, not each `send(2)`: a peer that reads a little at a time cannot keep
    /// the call going past it. Each `send(2)` then takes what fits at once, and the waits
    /// between them (`poll(2)`) are counted against the timeout.
    ///
    /// # Caveats
    ///
    /// On an error (a timeout too) some prefix of `data` may already have been sent; how
    /// much is not known.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = socketkit::socket::socketpair()?;
    /// a.sendall(&[7u8; 1000])?;
    /// a.shutdown(std::net::Shutdown::Write)?;
    /// let mut got = Vec::new();
    /// loop {
    ///     let chunk = b.recv(4096)?;
    ///     if chunk.is_empty() { break; }
    ///     got.extend(chunk);
    /// }
    /// assert_eq!(got.len(), 1000);
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    #[doc(alias = "write_all")]
    pub fn sendall(&self, mut data: &[u8]) -> Result<()> {
        let deadline = self.timeout().map(crate::socket::deadline_in);
        while !data.is_empty() {
            let sent = match deadline {
                None => self.inner.send_with_flags(data, libc::MSG_NOSIGNAL),
                Some(_) => self
                    .inner
                    .send_with_flags(data, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL),
            };
            match sent {
                Ok(0) => {
                    let err = io::Error::from(io::ErrorKind::WriteZero);
                    return Err(self.error_at_peer(Op::Send, err));
                }
                Ok(sent) => data = &data[sent..],
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    // Without a deadline the socket is non-blocking: the caller asked for
                    // calls that do not wait.
                    let Some(deadline) = deadline else {
                        return Err(self.error_at_peer(Op::Send, err));
                    };
                    let left = deadline.saturating_duration_since(Instant::now());
                    let writable = !left.is_zero()
                        && crate::sys::wait_writable(self.fileno(), Some(left))
                            .map_err(|err| self.error_at_peer(Op::Send, err))?;
                    if !writable {
                        let err = io::Error::new(io::ErrorKind::TimedOut, "timed out");
                        return Err(self.error_at_peer(Op::Send, err));
                    }
                }
                Err(err) => return Err(self.error_at_peer(Op::Send, self.timed_out(err))),
            }
        }
        Ok(())
    }

    /// Receives up to `bufsize` bytes with `recv(2)` (Python: `s.recv(1024)`).
    ///
    /// An empty vector means the peer closed its side (end of stream). With a timeout set
    /// and nothing arriving in time, fails with [`io::ErrorKind::TimedOut`].
    ///
    /// `recv(0)` returns an empty vector at once, without a system call, as Python's does:
    /// asked for no bytes, it has nothing to wait for, and that empty vector says nothing
    /// about the peer.
    ///
    /// # Errors
    ///
    /// Besides the kernel's, [`io::ErrorKind::OutOfMemory`] when no buffer of `bufsize`
    /// bytes can be allocated (`recv(usize::MAX)`).
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = socketkit::socket::socketpair()?;
    /// a.send(b"ping")?;
    /// drop(a);
    /// assert_eq!(b.recv(1024)?, b"ping");
    /// assert!(b.recv(1024)?.is_empty());
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    pub fn recv(&self, bufsize: usize) -> Result<Vec<u8>> {
        // recv(2) into no room would wait for data (or the timeout) and then read as end of
        // stream on a live connection.
        if bufsize == 0 {
            return Ok(Vec::new());
        }
        let mut buf =
            receive_buffer(bufsize).map_err(|err| self.error_at_peer(Op::Receive, err))?;
        let n = self
            .inner
            .recv(buf.spare_capacity_mut())
            .map_err(|err| self.error_at_peer(Op::Receive, self.timed_out(err)))?;
        // SAFETY: recv(2) initialised the first `n` bytes of the spare capacity.
        unsafe { buf.set_len(n) };
        Ok(fitted(buf))
    }

    /// Receives into `buf` with `recv(2)` and returns how many bytes arrived (Python:
    /// `s.recv_into(buf)`); `0` is end of stream.
    ///
    /// An empty `buf` gives `0` at once, without a system call (as [`Socket::recv`] with
    /// `0`; [`Read::read`] reads an empty buffer so too): that `0` is no end of
    /// stream.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = socketkit::socket::socketpair()?;
    /// a.send(b"abc")?;
    /// let mut buf = [0u8; 8];
    /// assert_eq!(b.recv_into(&mut buf)?, 3);
    /// assert_eq!(&buf[..3], b"abc");
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    #[doc(alias = "read")]
    pub fn recv_into(&self, buf: &mut [u8]) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.inner
            .recv(as_uninit(buf))
            .map_err(|err| self.error_at_peer(Op::Receive, self.timed_out(err)))
    }

    /// Copies into `buf` what has arrived without taking it off the socket: `recv(2)` with
    /// `MSG_PEEK` (Python: `s.recv(n, socket.MSG_PEEK)`). The next receive sees the same
    /// bytes again; `0` is end of stream. It waits as [`Socket::recv_into`] does, and as
    /// it, gives `0` at once for an empty `buf`.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = socketkit::socket::socketpair()?;
    /// a.send(b"abc")?;
    /// let mut buf = [0u8; 8];
    /// assert_eq!(b.peek(&mut buf)?, 3);
    /// assert_eq!(b.recv(8)?, b"abc");
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    #[doc(alias = "MSG_PEEK")]
    pub fn peek(&self, buf: &mut [u8]) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.inner
            .peek(as_uninit(buf))
            .map_err(|err| self.error_at_peer(Op::Receive, self.timed_out(err)))
    }

    /// Sends one datagram to `address` with `sendto(2)` (Python: `s.sendto(data, addr)`).
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::socket::{Family, Socket, Type};
    /// let server = Socket::new(Family::Inet, Type::Datagram)?;
    /// server.bind(("127.0.0.1", 0))?;
    /// let client = Socket::new(Family::Inet, Type::Datagram)?;
    /// client.sendto(b"hello", server.local_addr()?)?;
    /// let (data, from) = server.recvfrom(512)?;
    /// assert_eq!((data.as_slice(), from.port()), (&b"hello"[..], client.local_addr()?.port()));
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    #[doc(alias = "send_to")]
    pub fn sendto(&self, data: &[u8], address: impl ToAddress) -> Result<usize> {
        let address = self.first_address(&address)?;
        let raw = address.to_sockaddr();
        // `MSG_NOSIGNAL`, as `send`: a connected stream socket given an address fails as
        // `send` does when its peer has gone.
        raw.and_then(|raw| {
            self.inner
                .send_to_with_flags(data, &raw, libc::MSG_NOSIGNAL)
        })
        .map_err(|err| Error::new(Op::Send, &address, self.timed_out(err)))
    }

    /// Receives one datagram of at most `bufsize` bytes with `recvfrom(2)`, with its sender
    /// (Python: `data, addr = s.recvfrom(1024)`).
    ///
    /// # Caveats
    ///
    /// The part of a datagram longer than `bufsize` is discarded by the kernel.
    ///
    /// # Errors
    ///
    /// Besides the kernel's, [`io::ErrorKind::OutOfMemory`] when no buffer of `bufsize`
    /// bytes can be allocated.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::socket::{Family, Socket, Type};
    /// let s = Socket::new(Family::Inet, Type::Datagram)?;
    /// s.bind(("127.0.0.1", 0))?;
    /// s.sendto(b"to myself", s.local_addr()?)?;
    /// let (data, from) = s.recvfrom(4)?; // the rest of the datagram is dropped
    /// assert_eq!((data.as_slice(), from), (&b"to m"[..], s.local_addr()?));
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    #[doc(alias = "recv_from")]
    pub fn recvfrom(&self, bufsize: usize) -> Result<(Vec<u8>, Address)> {
        let mut buf =
            receive_buffer(bufsize).map_err(|err| self.error_at_local(Op::Receive, err))?;
        let (n, raw) = self
            .inner
            .recv_from(buf.spare_capacity_mut())
            .map_err(|err| self.error_at_local(Op::Receive, self.timed_out(err)))?;
        // SAFETY: recvfrom(2) initialised the first `n` bytes of the spare capacity.
        unsafe { buf.set_len(n) };
        Ok((fitted(buf), Address::from_sockaddr(&raw)))
    }
}

impl Socket {
    /// Waits for the next datagram and returns its whole length without taking it off the
    /// socket: `recv(2)` with `MSG_PEEK | MSG_TRUNC` and an empty buffer, so nothing is
    /// copied. Size the buffer of the next receive by it, and no datagram is cut.
    ///
    /// # Caveats
    ///
    /// Linux reports the whole length for UDP (since 2.6.8) and Unix datagram sockets
    /// (since 3.4); where the kernel does not, this returns 0, and
    /// [`Socket::recvfrom_trunc`] still tells a cut datagram.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::socket::{Family, Socket, Type};
    /// let s = Socket::new(Family::Inet, Type::Datagram)?;
    /// s.bind(("127.0.0.1", 0))?;
    /// s.sendto(&[7u8; 3000], s.local_addr()?)?;
    /// assert_eq!(s.peek_datagram_len()?, 3000);
    /// assert_eq!(s.recvfrom(4096)?.0.len(), 3000);
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    #[doc(alias = "MSG_TRUNC")]
    pub fn peek_datagram_len(&self) -> Result<usize> {
        self.inner
            .recv_with_flags(&mut [], libc::MSG_PEEK | libc::MSG_TRUNC)
            .map_err(|err| self.error_at_local(Op::Receive, self.timed_out(err)))
    }

    /// Receives one datagram into `buf` with `recvfrom(2)` and `MSG_TRUNC`: the length the
    /// datagram *had* (where the kernel reports it, see [`Socket::peek_datagram_len`]), and
    /// its sender. A length over `buf.len()` means the datagram was cut to fit and its end
    /// is lost; the first `buf.len()` bytes are in `buf`.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::socket::{Family, Socket, Type};
    /// let s = Socket::new(Family::Inet, Type::Datagram)?;
    /// s.bind(("127.0.0.1", 0))?;
    /// s.sendto(b"to myself", s.local_addr()?)?;
    /// let mut buf = [0u8; 4];
    /// let (len, from) = s.recvfrom_trunc(&mut buf)?;
    /// assert_eq!((len, &buf, from), (9, b"to m", s.local_addr()?));
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    #[doc(alias = "recvfrom_into")]
    pub fn recvfrom_trunc(&self, buf: &mut [u8]) -> Result<(usize, Address)> {
        let (n, raw) = self
            .inner
            .recv_from_with_flags(as_uninit(buf), libc::MSG_TRUNC)
            .map_err(|err| self.error_at_local(Op::Receive, self.timed_out(err)))?;
        Ok((n, Address::from_sockaddr(&raw)))
    }
}

/// An empty buffer with room for `bufsize` bytes. The size is the caller's input: one that
/// cannot be allocated (`usize::MAX`) is an `OutOfMemory` error naming it, not a panic.
fn receive_buffer(bufsize: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    buf.try_reserve_exact(bufsize).map_err(|_| {
        let why = format!("out of memory for a buffer of {bufsize} bytes");
        io::Error::new(io::ErrorKind::OutOfMemory, why)
    })?;
    Ok(buf)
}

/// `buf` without the room a receive left unused when that is most of it: Python's `recv`
/// returns an object of the length received, and a caller that keeps many small messages
/// from `recv(65536)` should not keep 64 KiB for each.
fn fitted(mut buf: Vec<u8>) -> Vec<u8> {
    if buf.capacity() / 2 > buf.len() {
        buf.shrink_to_fit();
    }
    buf
}

/// Views initialised bytes as possibly-uninitialised ones, for `recv(2)`.
pub(crate) fn as_uninit(buf: &mut [u8]) -> &mut [MaybeUninit<u8>] {
    // SAFETY: `MaybeUninit<u8>` has the layout of `u8`, and the kernel only writes
    // initialised bytes into the buffer, so no uninitialised value can be observed through
    // the original `&mut [u8]` afterwards (socket2's documentation gives this conversion).
    unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(self.recv_into(buf)?)
    }
}

impl Read for &Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(self.recv_into(buf)?)
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(self.send(buf)?)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for &Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(self.send(buf)?)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socket::{Family, Type, socketpair};

    #[test]
    fn a_buffer_too_big_to_allocate_is_an_error_naming_its_size() -> Result<()> {
        let (a, b) = socketpair()?;
        b.send(b"x")?;
        let err = a.recv(usize::MAX).expect_err("no such buffer");
        assert_eq!(err.kind(), io::ErrorKind::OutOfMemory);
        assert_eq!(
            err.to_string(),
            format!(
                "cannot receive from (unnamed): out of memory for a buffer of {} bytes",
                usize::MAX
            )
        );
        assert_eq!(a.recv(16)?, b"x", "nothing was taken off the socket");

        let udp = Socket::new(Family::Inet, Type::Datagram)?;
        udp.bind(("127.0.0.1", 0))?;
        let err = udp.recvfrom(usize::MAX).expect_err("no such buffer");
        assert_eq!(err.kind(), io::ErrorKind::OutOfMemory);
        let local = udp.local_addr()?;
        assert!(
            err.to_string()
                .starts_with(&format!("cannot receive on {local}: ")),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn a_receive_on_an_unbound_socket_names_no_address() -> Result<()> {
        for family in [Family::Inet, Family::Inet6] {
            let Ok(udp) = Socket::new(family, Type::Datagram) else {
                continue; // no IPv6 here
            };
            udp.set_timeout(Some(std::time::Duration::from_millis(10)))?;
            let err = udp.recvfrom(16).expect_err("nothing comes");
            assert_eq!(err.to_string(), "cannot receive: timed out", "{family:?}");
        }
        Ok(())
    }
}
