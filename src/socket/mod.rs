//! The low level: BSD sockets the way Python's `socket` module shows them, on `socket2`.
//!
//! One method is one system call, named in its documentation, so a reader of the tutorial's
//! `s = socket.socket(); s.bind((host, port)); s.listen(5); c, addr = s.accept()` finds
//! the same words here: [`Socket::new`], [`Socket::bind`], [`Socket::listen`],
//! [`Socket::accept`]. Errors say what was attempted and on which address
//! (`cannot bind 0.0.0.0:80: permission denied`).
//!
//! # Organization
//! - [`Socket`], [`Family`], [`Type`]: the socket and its core calls (this file);
//!   socket options are in one `impl` block per level (`SOL_SOCKET`, `IPPROTO_TCP`,
//!   `IPPROTO_IPV6`).
//! - [`Address`] and [`ToAddress`]: IPv4, IPv6 and Unix addresses.
//! - [`gethostname`], [`getaddrinfo`]: names.
//! - [`create_connection`], [`create_server`], [`socketpair`]: the convenience functions.
//!
//! # Examples
//!
//! The tutorial's server and client, in one process:
//!
//! ```
//! use socketkit::socket::{Family, Socket, Type};
//!
//! let s = Socket::new(Family::Inet, Type::Stream)?;
//! s.bind(("127.0.0.1", 0))?;
//! s.listen(5)?;
//! let addr = s.local_addr()?;
//!
//! let client = Socket::new(Family::Inet, Type::Stream)?;
//! client.connect(&addr)?;
//! let (c, _peer) = s.accept()?;
//! c.send("你好".as_bytes())?;
//! c.close();
//! assert_eq!(client.recv(1024)?, "你好".as_bytes());
//! # Ok::<(), socketkit::Error>(())
//! ```

mod address;
mod create;
mod options;
mod resolve;

use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

pub use address::{Address, ToAddress, abstract_name};
pub use create::{create_connection, create_server, socketpair};
pub use resolve::{getaddrinfo, gethostname};

use crate::error::{Error, Op, Result};

/// The address family: `AF_UNIX`, `AF_INET` or `AF_INET6`.
///
/// # Examples
///
/// ```
/// use socketkit::socket::{Family, Socket, Type};
/// let v6 = Socket::new(Family::Inet6, Type::Stream)?;
/// assert_eq!(v6.family(), Family::Inet6);
/// # Ok::<(), socketkit::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Unix domain sockets (`AF_UNIX`), addressed by a path.
    Unix,
    /// IPv4 (`AF_INET`).
    Inet,
    /// IPv6 (`AF_INET6`).
    Inet6,
}

impl Family {
    fn domain(self) -> socket2::Domain {
        match self {
            Family::Unix => socket2::Domain::UNIX,
            Family::Inet => socket2::Domain::IPV4,
            Family::Inet6 => socket2::Domain::IPV6,
        }
    }
}

/// The socket type: a byte stream (`SOCK_STREAM`, TCP) or datagrams (`SOCK_DGRAM`, UDP).
///
/// # Examples
///
/// ```
/// use socketkit::socket::{Family, Socket, Type};
/// let udp = Socket::new(Family::Inet, Type::Datagram)?;
/// udp.bind(("127.0.0.1", 0))?;
/// # Ok::<(), socketkit::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Type {
    /// A connected, reliable byte stream (`SOCK_STREAM`).
    Stream,
    /// Separate messages with boundaries (`SOCK_DGRAM`).
    Datagram,
}

impl Type {
    fn socket_type(self) -> socket2::Type {
        match self {
            Type::Stream => socket2::Type::STREAM,
            Type::Datagram => socket2::Type::DGRAM,
        }
    }
}

/// A BSD socket: Python's `socket.socket`, closed when dropped.
///
/// Created close-on-exec, in blocking mode, with no timeout. See the [module
/// documentation](self) for a complete server and client.
///
/// # Examples
///
/// ```
/// use socketkit::socket::{Family, Socket, Type};
/// let s = Socket::new(Family::Inet, Type::Stream)?; // socket.socket()
/// s.bind(("127.0.0.1", 0))?;
/// s.listen(5)?;
/// assert!(s.local_addr()?.port().is_some());
/// # Ok::<(), socketkit::Error>(())
/// ```
#[derive(Debug)]
pub struct Socket {
    inner: socket2::Socket,
    family: Family,
    timeout: Option<Duration>,
}

impl Socket {
    /// Creates a socket with `socket(2)` (Python: `socket.socket(family, type)`).
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::socket::{Family, Socket, Type};
    /// let udp = Socket::new(Family::Inet6, Type::Datagram)?;
    /// assert_eq!(udp.family(), Family::Inet6);
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    pub fn new(family: Family, ty: Type) -> Result<Socket> {
        Socket::create(family, ty, None)
    }

    /// Creates a socket with an explicit protocol number (Python:
    /// `socket.socket(family, type, proto)`); `0` picks the default for the type.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::socket::{Family, Socket, Type};
    /// let tcp = Socket::with_protocol(Family::Inet, Type::Stream, libc::IPPROTO_TCP)?;
    /// tcp.set_nodelay(true)?;
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    pub fn with_protocol(family: Family, ty: Type, protocol: i32) -> Result<Socket> {
        Socket::create(family, ty, Some(socket2::Protocol::from(protocol)))
    }

    fn create(family: Family, ty: Type, protocol: Option<socket2::Protocol>) -> Result<Socket> {
        let inner = socket2::Socket::new(family.domain(), ty.socket_type(), protocol)
            .map_err(|err| Error::new(Op::Create, format!("{family:?}/{ty:?}"), err))?;
        Ok(Socket::from_parts(inner, family))
    }

    fn from_parts(inner: socket2::Socket, family: Family) -> Socket {
        Socket {
            inner,
            family,
            timeout: None,
        }
    }

    /// A socket made of a descriptor this process was handed (an inherited listening
    /// socket, `fd:N`), with its type (`SO_TYPE`) and family (`getsockname(2)`) asked of the
    /// kernel, and its blocking mode left as it is: the open file may be shared with the
    /// process that passed it on.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when the descriptor is no socket, or a socket of another type than
    /// stream or datagram, or of another family than IPv4, IPv6 and Unix.
    pub(crate) fn from_inherited(fd: OwnedFd) -> io::Result<(Socket, Type)> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_owned());
        let probe = socket2::SockRef::from(&fd);
        let ty = match probe.r#type() {
            Ok(socket2::Type::STREAM) => Type::Stream,
            Ok(socket2::Type::DGRAM) => Type::Datagram,
            Ok(_) => return Err(invalid("a socket that is neither stream nor datagram")),
            Err(err) if err.raw_os_error() == Some(libc::ENOTSOCK) => {
                return Err(invalid("not a socket"));
            }
            Err(err) => return Err(err),
        };
        let family = match probe.local_addr()?.domain() {
            socket2::Domain::IPV4 => Family::Inet,
            socket2::Domain::IPV6 => Family::Inet6,
            socket2::Domain::UNIX => Family::Unix,
            _ => {
                return Err(invalid(
                    "a socket of another family than IPv4, IPv6 and Unix",
                ));
            }
        };
        Ok((Socket::from_parts(socket2::Socket::from(fd), family), ty))
    }

    /// The address family the socket was created with.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::socket::{Family, Socket, Type};
    /// let s = Socket::new(Family::Unix, Type::Datagram)?;
    /// assert_eq!(s.family(), Family::Unix);
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    pub fn family(&self) -> Family {
        self.family
    }

    /// Binds the socket to a local address with `bind(2)` (Python: `s.bind((host, port))`).
    ///
    /// A host name is resolved and the first address of the socket's family is used; for a
    /// Unix socket a `&str` is a path.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::socket::{Family, Socket, Type};
    /// let s = Socket::new(Family::Inet, Type::Stream)?;
    /// s.bind(("127.0.0.1", 0))?;
    /// assert_ne!(s.local_addr()?.port(), Some(0));
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    pub fn bind(&self, address: impl ToAddress) -> Result<()> {
        let address = self.first_address(&address)?;
        let raw = address.to_sockaddr();
        raw.and_then(|raw| self.inner.bind(&raw))
            .map_err(|err| Error::new(Op::Bind, &address, err))
    }

    /// Marks the socket as accepting connections with `listen(2)` (Python: `s.listen(5)`).
    ///
    /// `backlog` bounds the queue of connections that completed the handshake but were not yet
    /// accepted; the kernel caps it at `net.core.somaxconn`.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::socket::{Family, Socket, Type};
    /// let s = Socket::new(Family::Inet, Type::Stream)?;
    /// s.bind(("127.0.0.1", 0))?;
    /// s.listen(5)?;
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    pub fn listen(&self, backlog: i32) -> Result<()> {
        self.inner
            .listen(backlog)
            .map_err(|err| self.error_at_local(Op::Listen, err))
    }

    /// Waits for a connection with `accept4(2)` and returns it with the peer's address
    /// (Python: `c, addr = s.accept()`).
    ///
    /// The new socket is blocking with no timeout, whatever the listener's settings. With a
    /// timeout set on the listener, waiting longer fails with [`io::ErrorKind::TimedOut`].
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::socket::{Family, Socket, Type, create_connection};
    /// let s = Socket::new(Family::Inet, Type::Stream)?;
    /// s.bind(("127.0.0.1", 0))?;
    /// s.listen(5)?;
    /// let client = create_connection(&s.local_addr()?, None)?;
    /// let (c, addr) = s.accept()?;
    /// assert_eq!(addr, client.local_addr()?);
    /// assert_eq!(c.peer_addr()?, addr);
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    pub fn accept(&self) -> Result<(Socket, Address)> {
        let (inner, raw) = self
            .inner
            .accept()
            .map_err(|err| self.error_at_local(Op::Accept, self.timed_out(err)))?;
        Ok((
            Socket::from_parts(inner, self.family),
            Address::from_sockaddr(&raw),
        ))
    }

    /// Connects to a remote address with `connect(2)` (Python: `s.connect((host, port))`).
    ///
    /// With a timeout set ([`Socket::set_timeout`]) the connect gives up after it. A host name
    /// is resolved and its addresses of the socket's family are tried in order.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::socket::{Family, Socket, Type};
    /// let server = Socket::new(Family::Inet, Type::Stream)?;
    /// server.bind(("127.0.0.1", 0))?;
    /// server.listen(1)?;
    /// let s = Socket::new(Family::Inet, Type::Stream)?;
    /// s.connect(server.local_addr()?)?;
    /// assert_eq!(s.peer_addr()?, server.local_addr()?);
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    pub fn connect(&self, address: impl ToAddress) -> Result<()> {
        let candidates = address.to_addresses(Some(self.family))?;
        let mut last = None;
        for candidate in candidates {
            match self.connect_one(&candidate) {
                Ok(()) => return Ok(()),
                Err(err) => last = Some(err),
            }
        }
        // `to_addresses` returns at least one address or an error, so `last` is set.
        Err(last
            .unwrap_or_else(|| Error::without_target(Op::Connect, io::ErrorKind::NotFound.into())))
    }

    fn connect_one(&self, address: &Address) -> Result<()> {
        let result = address.to_sockaddr().and_then(|raw| match self.timeout {
            Some(timeout) => self.inner.connect_timeout(&raw, timeout),
            None => self.inner.connect(&raw),
        });
        result.map_err(|err| Error::new(Op::Connect, address, err))
    }

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
        self.inner
            .send(data)
            .map_err(|err| self.error_at_peer(Op::Send, self.timed_out(err)))
    }

    /// Sends every byte of `data`, calling `send(2)` until done (Python: `s.sendall(data)`).
    ///
    /// # Caveats
    ///
    /// On an error some prefix of `data` may already have been sent; how much is not known.
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
        while !data.is_empty() {
            match self.inner.send(data) {
                Ok(0) => {
                    let err = io::Error::from(io::ErrorKind::WriteZero);
                    return Err(self.error_at_peer(Op::Send, err));
                }
                Ok(sent) => data = &data[sent..],
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
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
        let mut buf = Vec::with_capacity(bufsize);
        let n = self
            .inner
            .recv(buf.spare_capacity_mut())
            .map_err(|err| self.error_at_peer(Op::Receive, self.timed_out(err)))?;
        // SAFETY: recv(2) initialised the first `n` bytes of the spare capacity.
        unsafe { buf.set_len(n) };
        Ok(buf)
    }

    /// Receives into `buf` with `recv(2)` and returns how many bytes arrived (Python:
    /// `s.recv_into(buf)`); `0` is end of stream.
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
        self.inner
            .recv(as_uninit(buf))
            .map_err(|err| self.error_at_peer(Op::Receive, self.timed_out(err)))
    }

    /// Copies into `buf` what has arrived without taking it off the socket: `recv(2)` with
    /// `MSG_PEEK` (Python: `s.recv(n, socket.MSG_PEEK)`). The next receive sees the same
    /// bytes again; `0` is end of stream. It waits as [`Socket::recv_into`] does.
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
        raw.and_then(|raw| self.inner.send_to(data, &raw))
            .map_err(|err| Error::new(Op::Send, &address, self.timed_out(err)))
    }

    /// Receives one datagram of at most `bufsize` bytes with `recvfrom(2)`, with its sender
    /// (Python: `data, addr = s.recvfrom(1024)`).
    ///
    /// # Caveats
    ///
    /// The part of a datagram longer than `bufsize` is discarded by the kernel.
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
        let mut buf = Vec::with_capacity(bufsize);
        let (n, raw) = self
            .inner
            .recv_from(buf.spare_capacity_mut())
            .map_err(|err| self.error_at_local(Op::Receive, self.timed_out(err)))?;
        // SAFETY: recvfrom(2) initialised the first `n` bytes of the spare capacity.
        unsafe { buf.set_len(n) };
        Ok((buf, Address::from_sockaddr(&raw)))
    }

    /// Shuts down one or both directions with `shutdown(2)` (Python: `s.shutdown(how)`).
    ///
    /// # Caveats
    ///
    /// `Shutdown::Write` sends a FIN: the peer reads end of stream, while this side may go on
    /// receiving (a half-close). `Shutdown::Read` only stops this side's reads; the peer is
    /// not told.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = socketkit::socket::socketpair()?;
    /// a.shutdown(std::net::Shutdown::Write)?;
    /// assert!(b.recv(16)?.is_empty()); // b sees end of stream
    /// b.send(b"still open")?;           // but may still send to a
    /// assert_eq!(a.recv(16)?, b"still open");
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    pub fn shutdown(&self, how: Shutdown) -> Result<()> {
        self.inner
            .shutdown(how)
            .map_err(|err| self.error_at_peer(Op::Shutdown, err))
    }

    /// Closes the socket (Python: `s.close()`). Dropping it does the same.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = socketkit::socket::socketpair()?;
    /// a.close();
    /// assert!(b.recv(16)?.is_empty()); // the peer sees end of stream
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    pub fn close(self) {
        drop(self);
    }

    /// Sets a timeout for blocking calls (Python: `s.settimeout(t)`): `None` waits forever.
    ///
    /// It applies to `connect`, `accept`, `send*` and `recv*`; a call that waits longer
    /// fails with [`io::ErrorKind::TimedOut`].
    ///
    /// # Errors
    ///
    /// A zero duration is refused (`InvalidInput`): use [`Socket::set_blocking`]`(false)`
    /// for non-blocking mode.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let (mut a, _b) = socketkit::socket::socketpair()?;
    /// a.set_timeout(Some(Duration::from_millis(20)))?;
    /// assert_eq!(a.recv(16).unwrap_err().kind(), std::io::ErrorKind::TimedOut);
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    #[doc(alias = "settimeout")]
    pub fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        let set = |name, result: io::Result<()>| {
            result.map_err(|err| self.error_at_local(Op::SetOption(name), err))
        };
        set("SO_RCVTIMEO", self.inner.set_read_timeout(timeout))?;
        set("SO_SNDTIMEO", self.inner.set_write_timeout(timeout))?;
        self.timeout = timeout;
        Ok(())
    }

    /// The timeout set by [`Socket::set_timeout`] (Python: `s.gettimeout()`).
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut a, _b) = socketkit::socket::socketpair()?;
    /// assert_eq!(a.timeout(), None);
    /// a.set_timeout(Some(std::time::Duration::from_secs(1)))?;
    /// assert_eq!(a.timeout(), Some(std::time::Duration::from_secs(1)));
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    #[doc(alias = "gettimeout")]
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Switches between blocking and non-blocking mode with `O_NONBLOCK` (Python:
    /// `s.setblocking(flag)`). In non-blocking mode a call that would wait fails with
    /// [`io::ErrorKind::WouldBlock`].
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, _b) = socketkit::socket::socketpair()?;
    /// a.set_blocking(false)?;
    /// assert_eq!(a.recv(16).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    #[doc(alias = "setblocking")]
    pub fn set_blocking(&self, blocking: bool) -> Result<()> {
        self.inner
            .set_nonblocking(!blocking)
            .map_err(|err| self.error_at_local(Op::SetOption("O_NONBLOCK"), err))
    }

    /// The local address, from `getsockname(2)` (Python: `s.getsockname()`).
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::socket::{Family, Socket, Type};
    /// let s = Socket::new(Family::Inet, Type::Stream)?;
    /// s.bind(("127.0.0.1", 0))?;
    /// assert_eq!(s.local_addr()?.ip(), Some("127.0.0.1".parse().unwrap()));
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    #[doc(alias = "getsockname")]
    pub fn local_addr(&self) -> Result<Address> {
        self.inner
            .local_addr()
            .map(|raw| Address::from_sockaddr(&raw))
            .map_err(|err| Error::without_target(Op::LocalAddress, err))
    }

    /// The connected peer's address, from `getpeername(2)` (Python: `s.getpeername()`).
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, _b) = socketkit::socket::socketpair()?;
    /// assert_eq!(a.peer_addr()?.to_string(), "(unnamed)");
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    #[doc(alias = "getpeername")]
    pub fn peer_addr(&self) -> Result<Address> {
        self.inner
            .peer_addr()
            .map(|raw| Address::from_sockaddr(&raw))
            .map_err(|err| Error::without_target(Op::PeerAddress, err))
    }

    /// A second handle on the same socket, with `dup(2)` (Python: `s.dup()`), for reading on
    /// one thread while writing on another.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = socketkit::socket::socketpair()?;
    /// let a2 = a.try_clone()?;
    /// a2.send(b"x")?;
    /// assert_eq!(b.recv(1)?, b"x");
    /// # drop(a);
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    #[doc(alias = "dup")]
    pub fn try_clone(&self) -> Result<Socket> {
        let inner = self
            .inner
            .try_clone()
            .map_err(|err| self.error_at_local(Op::Create, err))?;
        Ok(Socket {
            inner,
            family: self.family,
            timeout: self.timeout,
        })
    }

    /// The file descriptor (Python: `s.fileno()`); it stays owned by the socket.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, _b) = socketkit::socket::socketpair()?;
    /// assert!(a.fileno() >= 0);
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    pub fn fileno(&self) -> RawFd {
        self.inner.as_raw_fd()
    }

    /// The one address `bind`/`sendto` use: the first of the socket's family.
    fn first_address(&self, address: &impl ToAddress) -> Result<Address> {
        address::first(address.to_addresses(Some(self.family))?)
    }

    /// Python raises `socket.timeout` when a call with a timeout runs out; the kernel says
    /// `EAGAIN`. Only a socket with a timeout set gets the translation: in non-blocking mode
    /// `WouldBlock` is the truth.
    fn timed_out(&self, err: io::Error) -> io::Error {
        if self.timeout.is_some() && err.kind() == io::ErrorKind::WouldBlock {
            io::Error::new(io::ErrorKind::TimedOut, "timed out")
        } else {
            err
        }
    }

    /// An error naming the peer when there is one (the failure path pays for `getpeername`;
    /// after a reset there is none any more, and naming our own address would mislead).
    fn error_at_peer(&self, op: Op, err: io::Error) -> Error {
        match self.inner.peer_addr() {
            Ok(raw) => Error::new(op, Address::from_sockaddr(&raw), err),
            Err(_) => Error::without_target(op, err),
        }
    }

    /// An error naming the local address when the socket is bound.
    fn error_at_local(&self, op: Op, err: io::Error) -> Error {
        match self
            .inner
            .local_addr()
            .map(|raw| Address::from_sockaddr(&raw))
        {
            Ok(local) if local.as_socket_addr().is_some() || local.as_path().is_some() => {
                Error::new(op, local, err)
            }
            _ => Error::without_target(op, err),
        }
    }
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

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

/// Hands the descriptor over, for building `std::net` or `tokio::net` types from a socket
/// prepared here (`std::net::TcpListener::from(OwnedFd::from(socket))`).
impl From<Socket> for OwnedFd {
    fn from(socket: Socket) -> OwnedFd {
        socket.inner.into()
    }
}
