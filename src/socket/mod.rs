//! The low level: BSD sockets the way Python's `socket` module shows them, on `socket2`.
//!
//! One method is one system call, named in its documentation, so a reader of the tutorial's
//! `s = socket.socket(); s.bind((host, port)); s.listen(5); c, addr = s.accept()` finds
//! the same words here: [`Socket::new`], [`Socket::bind`], [`Socket::listen`],
//! [`Socket::accept`]. Errors say what was attempted and on which address
//! (`cannot bind 0.0.0.0:80: permission denied`).
//!
//! # Organization
//! - [`Socket`], [`Family`], [`Type`]: the socket, its creation, its addresses and
//!   descriptor (this file); its calls in one `impl` block per concern: `connection.rs`
//!   (`bind`, `listen`, `accept`, `connect`, `shutdown`, `close`), `transfer.rs` (`send*`,
//!   `recv*`, `Read`/`Write`), `timeout.rs` (timeouts and blocking mode); socket options
//!   are in one `impl` block per level (`SOL_SOCKET`, `IPPROTO_TCP`, `IPPROTO_IPV6`).
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
mod connection;
mod create;
mod options;
mod resolve;
mod timeout;
pub(crate) use timeout::{FAR_FUTURE, deadline_in};
mod to_address;
mod transfer;

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

pub use address::{Address, abstract_name};
pub use create::{create_connection, create_server, socketpair};
pub(crate) use resolve::unresolved;
pub use resolve::{getaddrinfo, gethostname};
pub use to_address::ToAddress;
pub(crate) use transfer::as_uninit;

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
    shared: Arc<Shared>,
}

/// What the handles of one socket ([`Socket::try_clone`]) share besides the descriptor,
/// as they share the socket.
#[derive(Debug, Default)]
struct Shared {
    /// The peer once known (connect, accept, getpeername), to name it in errors after a
    /// reset, when the kernel no longer does.
    peer: Mutex<Option<Address>>,
    /// The timeout as set: the kernel keeps it in clock ticks, and would read 50 ms back as
    /// 52 ms on a 250 Hz kernel.
    timeout: Mutex<Option<Duration>>,
}

impl Shared {
    /// One of the values; the locks are only held to copy a value, which does not panic,
    /// so there is no poison to fear.
    fn get<T: Clone>(value: &Mutex<T>) -> T {
        value.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Sets one of the values (see [`Shared::get`] on the lock).
    fn set<T>(value: &Mutex<T>, new: T) {
        *value.lock().unwrap_or_else(PoisonError::into_inner) = new;
    }
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
            shared: Arc::default(),
        }
    }

    /// Whether the socket is a datagram one (`SO_TYPE`; a socket whose type cannot be asked
    /// is taken for a stream).
    pub(crate) fn is_datagram(&self) -> bool {
        self.inner
            .r#type()
            .is_ok_and(|ty| ty == socket2::Type::DGRAM)
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
        let peer = self
            .inner
            .peer_addr()
            .map(|raw| Address::from_sockaddr(&raw))
            .map_err(|err| Error::without_target(Op::PeerAddress, err))?;
        self.remember_peer(&peer);
        Ok(peer)
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
            shared: Arc::clone(&self.shared),
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

    /// The one address `sendto` sends to: the first of the socket's family.
    fn first_address(&self, address: &impl ToAddress) -> Result<Address> {
        to_address::first(address.to_addresses(Some(self.family))?)
    }

    /// The peer remembered from connect, accept or `getpeername`, for code that names it
    /// after the kernel may have forgotten it (a reset before the first look).
    pub(crate) fn known_peer(&self) -> Option<Address> {
        Shared::get(&self.shared.peer)
    }

    /// Keeps `peer` for [`Socket::error_at_peer`].
    fn remember_peer(&self, peer: &Address) {
        Shared::set(&self.shared.peer, Some(peer.clone()));
    }

    /// An error naming the peer when there is one. The failure path pays for `getpeername`,
    /// which is the truth; after a reset the kernel knows no peer any more, and the one
    /// remembered from connect, accept or an earlier `getpeername` is named (never our own
    /// address, which would mislead).
    pub(crate) fn error_at_peer(&self, op: Op, err: io::Error) -> Error {
        let peer = match self.inner.peer_addr() {
            Ok(raw) => {
                let peer = Address::from_sockaddr(&raw);
                self.remember_peer(&peer);
                Some(peer)
            }
            Err(_) => Shared::get(&self.shared.peer),
        };
        match peer {
            Some(peer) => Error::new(op, peer, err),
            None => Error::without_target(op, err),
        }
    }

    /// An error naming the local address when the socket is bound (an IP socket that is
    /// not reads as the wildcard address with port 0, which names nothing).
    fn error_at_local(&self, op: Op, err: io::Error) -> Error {
        let bound = |local: &Address| match local.as_socket_addr() {
            Some(ip) => ip.port() != 0 || !ip.ip().is_unspecified(),
            None => local.as_path().is_some(),
        };
        match self
            .inner
            .local_addr()
            .map(|raw| Address::from_sockaddr(&raw))
        {
            Ok(local) if bound(&local) => Error::at_local(op, local, err),
            _ => Error::without_target(op, err),
        }
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
