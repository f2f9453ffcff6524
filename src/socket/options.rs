//! Socket options, one `impl` block per level, sorted by option name; each getter and setter
//! is one `getsockopt(2)`/`setsockopt(2)` call.

use std::io;
use std::time::Duration;

use super::Socket;
use crate::error::{Op, Result};

/// Runs an option call and labels its failure with the option's name.
macro_rules! option_call {
    ($socket:expr, $op:ident($name:literal), $call:expr) => {
        $call.map_err(|err: io::Error| $socket.error_at_local(Op::$op($name), err))
    };
}

/// `SOL_SOCKET` options, see [`socket(7)`](https://man7.org/linux/man-pages/man7/socket.7.html).
impl Socket {
    /// Whether `SO_BROADCAST` is set (datagrams to broadcast addresses allowed).
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::socket::{Family, Socket, Type};
    /// let s = Socket::new(Family::Inet, Type::Datagram)?;
    /// s.set_broadcast(true)?;
    /// assert!(s.broadcast()?);
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    pub fn broadcast(&self) -> Result<bool> {
        option_call!(self, GetOption("SO_BROADCAST"), self.inner.broadcast())
    }

    /// Sets `SO_BROADCAST`.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::socket::{Family, Socket, Type};
    /// let s = Socket::new(Family::Inet, Type::Datagram)?;
    /// s.set_broadcast(true)?;
    /// assert!(s.broadcast()?);
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    pub fn set_broadcast(&self, on: bool) -> Result<()> {
        option_call!(
            self,
            SetOption("SO_BROADCAST"),
            self.inner.set_broadcast(on)
        )
    }

    /// Whether `SO_KEEPALIVE` is set (the kernel probes idle connections).
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::socket::{Family, Socket, Type};
    /// let s = Socket::new(Family::Inet, Type::Stream)?;
    /// s.set_keepalive(true)?;
    /// assert!(s.keepalive()?);
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    pub fn keepalive(&self) -> Result<bool> {
        option_call!(self, GetOption("SO_KEEPALIVE"), self.inner.keepalive())
    }

    /// Sets `SO_KEEPALIVE`.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::socket::{Family, Socket, Type};
    /// let s = Socket::new(Family::Inet, Type::Stream)?;
    /// s.set_keepalive(true)?;
    /// assert!(s.keepalive()?);
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    pub fn set_keepalive(&self, on: bool) -> Result<()> {
        option_call!(
            self,
            SetOption("SO_KEEPALIVE"),
            self.inner.set_keepalive(on)
        )
    }

    /// `SO_LINGER`: how long `close` waits for unsent data; `Some(0)` resets the connection.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::socket::{Family, Socket, Type};
    /// let s = Socket::new(Family::Inet, Type::Stream)?;
    /// s.set_linger(Some(std::time::Duration::from_secs(2)))?;
    /// assert_eq!(s.linger()?, Some(std::time::Duration::from_secs(2)));
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    pub fn linger(&self) -> Result<Option<Duration>> {
        option_call!(self, GetOption("SO_LINGER"), self.inner.linger())
    }

    /// Sets `SO_LINGER`, in whole seconds (a fraction is dropped, as the kernel counts).
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] for more seconds than the kernel's `int` holds
    /// (`i32::MAX`, some 68 years), which it would otherwise read as a negative time.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::socket::{Family, Socket, Type};
    /// let s = Socket::new(Family::Inet, Type::Stream)?;
    /// s.set_linger(None)?;
    /// assert_eq!(s.linger()?, None);
    /// let too_long = std::time::Duration::from_secs(3_000_000_000);
    /// assert!(s.set_linger(Some(too_long)).is_err());
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    pub fn set_linger(&self, linger: Option<Duration>) -> Result<()> {
        // socket2 casts the seconds to a C int, which wraps: refuse what does not fit.
        let fits = linger.is_none_or(|linger| i32::try_from(linger.as_secs()).is_ok());
        let call = if fits {
            self.inner.set_linger(linger)
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a linger time is at most 2147483647 seconds",
            ))
        };
        option_call!(self, SetOption("SO_LINGER"), call)
    }

    /// `SO_RCVBUF`: the kernel's receive buffer size in bytes (Linux reports twice the
    /// value set, to account for its bookkeeping).
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::socket::{Family, Socket, Type};
    /// let s = Socket::new(Family::Inet, Type::Stream)?;
    /// s.set_recv_buffer_size(65536)?;
    /// assert!(s.recv_buffer_size()? >= 65536);
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    pub fn recv_buffer_size(&self) -> Result<usize> {
        option_call!(self, GetOption("SO_RCVBUF"), self.inner.recv_buffer_size())
    }

    /// Sets `SO_RCVBUF`.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::socket::{Family, Socket, Type};
    /// let s = Socket::new(Family::Inet, Type::Stream)?;
    /// s.set_recv_buffer_size(65536)?;
    /// assert!(s.recv_buffer_size()? >= 65536);
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    pub fn set_recv_buffer_size(&self, size: usize) -> Result<()> {
        option_call!(
            self,
            SetOption("SO_RCVBUF"),
            self.inner.set_recv_buffer_size(size)
        )
    }

    /// Whether `SO_REUSEADDR` is set (a listener may bind a port with connections still in
    /// `TIME_WAIT`).
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::socket::{Family, Socket, Type};
    /// let s = Socket::new(Family::Inet, Type::Stream)?;
    /// s.set_reuse_address(false)?;
    /// assert!(!s.reuse_address()?);
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    pub fn reuse_address(&self) -> Result<bool> {
        option_call!(self, GetOption("SO_REUSEADDR"), self.inner.reuse_address())
    }

    /// Sets `SO_REUSEADDR`, as Python's `create_server` does on POSIX so that a restarted
    /// server can bind its port at once.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::socket::{Family, Socket, Type};
    /// let s = Socket::new(Family::Inet, Type::Stream)?;
    /// s.set_reuse_address(true)?;
    /// assert!(s.reuse_address()?);
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    pub fn set_reuse_address(&self, on: bool) -> Result<()> {
        option_call!(
            self,
            SetOption("SO_REUSEADDR"),
            self.inner.set_reuse_address(on)
        )
    }

    /// Whether `SO_REUSEPORT` is set (several sockets share a port, the kernel spreads
    /// connections among them).
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::socket::{Family, Socket, Type};
    /// let s = Socket::new(Family::Inet, Type::Stream)?;
    /// s.set_reuse_port(true)?;
    /// assert!(s.reuse_port()?);
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    pub fn reuse_port(&self) -> Result<bool> {
        option_call!(self, GetOption("SO_REUSEPORT"), self.inner.reuse_port())
    }

    /// Sets `SO_REUSEPORT`.
    ///
    /// # Errors
    ///
    /// Kernels before 3.9 lack it and fail with `ENOPROTOOPT`.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::socket::{Family, Socket, Type};
    /// let s = Socket::new(Family::Inet, Type::Stream)?;
    /// s.set_reuse_port(true)?;
    /// assert!(s.reuse_port()?);
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    pub fn set_reuse_port(&self, on: bool) -> Result<()> {
        option_call!(
            self,
            SetOption("SO_REUSEPORT"),
            self.inner.set_reuse_port(on)
        )
    }

    /// `SO_SNDBUF`: the kernel's send buffer size in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::socket::{Family, Socket, Type};
    /// let s = Socket::new(Family::Inet, Type::Stream)?;
    /// s.set_send_buffer_size(65536)?;
    /// assert!(s.send_buffer_size()? >= 65536);
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    pub fn send_buffer_size(&self) -> Result<usize> {
        option_call!(self, GetOption("SO_SNDBUF"), self.inner.send_buffer_size())
    }

    /// Sets `SO_SNDBUF`.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::socket::{Family, Socket, Type};
    /// let s = Socket::new(Family::Inet, Type::Stream)?;
    /// s.set_send_buffer_size(65536)?;
    /// assert!(s.send_buffer_size()? >= 65536);
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    pub fn set_send_buffer_size(&self, size: usize) -> Result<()> {
        option_call!(
            self,
            SetOption("SO_SNDBUF"),
            self.inner.set_send_buffer_size(size)
        )
    }
}

/// `IPPROTO_TCP` options, see [`tcp(7)`](https://man7.org/linux/man-pages/man7/tcp.7.html).
impl Socket {
    /// Whether `TCP_NODELAY` is set (Nagle's algorithm off: small writes go out at once).
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::socket::{Family, Socket, Type};
    /// let s = Socket::new(Family::Inet, Type::Stream)?;
    /// s.set_nodelay(false)?;
    /// assert!(!s.nodelay()?);
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    pub fn nodelay(&self) -> Result<bool> {
        option_call!(self, GetOption("TCP_NODELAY"), self.inner.tcp_nodelay())
    }

    /// Sets `TCP_NODELAY`.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::socket::{Family, Socket, Type};
    /// let s = Socket::new(Family::Inet, Type::Stream)?;
    /// s.set_nodelay(true)?;
    /// assert!(s.nodelay()?);
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    pub fn set_nodelay(&self, on: bool) -> Result<()> {
        option_call!(
            self,
            SetOption("TCP_NODELAY"),
            self.inner.set_tcp_nodelay(on)
        )
    }
}

/// `IPPROTO_IPV6` options, see [`ipv6(7)`](https://man7.org/linux/man-pages/man7/ipv6.7.html).
impl Socket {
    /// Whether `IPV6_V6ONLY` is set (an IPv6 socket refuses IPv4-mapped peers).
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::socket::{Family, Socket, Type};
    /// let s = Socket::new(Family::Inet6, Type::Stream)?;
    /// s.set_only_v6(true)?;
    /// assert!(s.only_v6()?);
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    pub fn only_v6(&self) -> Result<bool> {
        option_call!(self, GetOption("IPV6_V6ONLY"), self.inner.only_v6())
    }

    /// Sets `IPV6_V6ONLY`; clear it before `bind` for one socket serving IPv4 and IPv6.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::socket::{Family, Socket, Type};
    /// let s = Socket::new(Family::Inet6, Type::Stream)?;
    /// s.set_only_v6(false)?;
    /// assert!(!s.only_v6()?);
    /// # Ok::<(), socketkit::Error>(())
    /// ```
    pub fn set_only_v6(&self, on: bool) -> Result<()> {
        option_call!(self, SetOption("IPV6_V6ONLY"), self.inner.set_only_v6(on))
    }
}
