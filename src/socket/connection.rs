//! Where a socket is and whom it talks to: `bind`, `listen`, `accept` and `connect` set a
//! connection up (or give a datagram socket its addresses); `shutdown` and `close` end it.

use std::io;
use std::net::Shutdown;

use super::{Address, Socket, ToAddress};
use crate::error::{Error, Op, Result};

impl Socket {
    /// Binds the socket to a local address with `bind(2)` (Python: `s.bind((host, port))`).
    ///
    /// A host name is resolved and the first address of the socket's family is used; for a
    /// Unix socket a `&str` is a path. An empty host is every interface, as in Python:
    /// `s.bind(("", 8080))` (or `":8080"`) binds `0.0.0.0:8080` on an IPv4 socket,
    /// `[::]:8080` on an IPv6 one.
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
        let address = super::to_address::first(address.to_bind_addresses(Some(self.family))?)?;
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
        let accepted = Socket::from_parts(inner, self.family);
        // Linux copies SO_RCVTIMEO and SO_SNDTIMEO to the new socket (accept4 does not copy
        // O_NONBLOCK): a listener's timeout is no timeout of its connections.
        if self.timeout().is_some() {
            accepted.set_kernel_timeout(None)?;
        }
        let peer = Address::from_sockaddr(&raw);
        accepted.remember_peer(&peer);
        Ok((accepted, peer))
    }

    /// Connects to a remote address with `connect(2)` (Python: `s.connect((host, port))`).
    ///
    /// With a timeout set ([`Socket::set_timeout`]) the connect gives up after it. A host name
    /// is resolved and its addresses of the socket's family are tried in order.
    ///
    /// # Errors
    ///
    /// Besides the kernel's, an [`Op::Resolve`] error for a name that does not resolve, and
    /// for an empty host, which names every interface to bind to but no address to connect
    /// to (Python connects to `0.0.0.0`, which Linux takes for this host: write
    /// `127.0.0.1` or `localhost` for that).
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
        // The timeout is read when it is needed: it may have been set through another handle.
        let result = address.to_sockaddr().and_then(|raw| match self.timeout() {
            Some(timeout) => self.inner.connect_timeout(&raw, timeout),
            None => self.inner.connect(&raw),
        });
        result.map_err(|err| Error::new(Op::Connect, address, err))?;
        self.remember_peer(address);
        Ok(())
    }

    /// Starts connecting to `address` without waiting for the answer (the socket is made
    /// non-blocking): `true` when connected already, `false` when under way — the socket
    /// turns writable when it ends, and [`Socket::finish_connect`] says how. For racing
    /// several addresses at once (Happy Eyeballs).
    pub(crate) fn start_connect(&self, address: &Address) -> Result<bool> {
        let fail = |err| Error::new(Op::Connect, address, err);
        self.set_blocking(false)?;
        let raw = address.to_sockaddr().map_err(fail)?;
        match self.inner.connect(&raw) {
            Ok(()) => {
                self.remember_peer(address);
                Ok(true)
            }
            Err(err) if crate::sys::connect_in_progress(&err) => Ok(false),
            Err(err) => Err(fail(err)),
        }
    }

    /// How a connect that [`Socket::start_connect`] began has ended, once the socket is
    /// writable: `Ok` when connected (the socket is left non-blocking), the connect's own
    /// error (`SO_ERROR`) otherwise.
    pub(crate) fn finish_connect(&self, address: &Address) -> Result<()> {
        let fail = |err| Error::new(Op::Connect, address, err);
        match self.inner.take_error() {
            Ok(None) => {}
            Ok(Some(err)) | Err(err) => return Err(fail(err)),
        }
        // Writable with no error may also mean not connected (a spurious wake-up): the
        // peer's address is there only once the connection is.
        self.inner.peer_addr().map_err(fail)?;
        self.remember_peer(address);
        Ok(())
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
}

#[cfg(test)]
mod tests {
    use std::thread;
    use std::time::Duration;

    use super::*;
    use crate::socket::{Family, Type};

    #[test]
    fn an_empty_host_binds_every_interface_and_connects_nowhere() -> Result<()> {
        for (family, wildcard) in [(Family::Inet, "0.0.0.0"), (Family::Inet6, "::")] {
            let s = Socket::new(family, Type::Stream)?;
            s.bind(("", 0))?;
            assert_eq!(s.local_addr()?.ip(), Some(wildcard.parse().unwrap()));
            let s = Socket::new(family, Type::Datagram)?;
            s.bind(":0")?;
            assert_eq!(s.local_addr()?.ip(), Some(wildcard.parse().unwrap()));
        }
        let s = Socket::new(Family::Inet, Type::Stream)?;
        let err = s.connect(("", 80)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(
            err.to_string()
                .starts_with("cannot resolve '': an empty host names no address to connect"),
            "{err}"
        );
        Ok(())
    }

    /// Resets the connection of `socket` (`SO_LINGER` 0, then close).
    fn reset(socket: Socket) -> Result<()> {
        socket.set_linger(Some(Duration::ZERO))?;
        socket.close();
        Ok(())
    }

    #[test]
    fn errors_after_a_reset_name_the_peer_on_every_handle() -> Result<()> {
        let listener = Socket::new(Family::Inet, Type::Stream)?;
        listener.bind(("127.0.0.1", 0))?;
        listener.listen(2)?;
        let server = listener.local_addr()?;

        let client = Socket::new(Family::Inet, Type::Stream)?;
        let reader = client.try_clone()?; // a handle made before the peer was known
        client.connect(&server)?;
        reset(listener.accept()?.0)?;
        reader.set_timeout(Some(Duration::from_secs(5)))?;
        let err = reader.recv(1).expect_err("the server reset the connection");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
        assert_eq!(
            err.to_string(),
            format!("cannot receive from {server}: connection reset by peer")
        );

        let client = Socket::new(Family::Inet, Type::Stream)?;
        client.connect(&server)?;
        let (accepted, peer) = listener.accept()?;
        reset(client)?;
        accepted.set_timeout(Some(Duration::from_secs(5)))?;
        let err = accepted
            .recv(1)
            .expect_err("the client reset the connection");
        assert_eq!(
            err.to_string(),
            format!("cannot receive from {peer}: connection reset by peer")
        );
        Ok(())
    }

    #[test]
    fn an_accepted_socket_has_no_timeout_whatever_the_listener_has() -> Result<()> {
        let listener = Socket::new(Family::Inet, Type::Stream)?;
        listener.bind(("127.0.0.1", 0))?;
        listener.listen(1)?;
        listener.set_timeout(Some(Duration::from_millis(100)))?;
        let client = Socket::new(Family::Inet, Type::Stream)?;
        client.connect(listener.local_addr()?)?;
        let (accepted, _) = listener.accept()?;
        assert_eq!(accepted.timeout(), None);
        assert!(accepted.blocking()?);
        // With the listener's timeout inherited, the receive fails before this byte arrives.
        let late = thread::spawn(move || {
            thread::sleep(Duration::from_millis(400));
            client.send(b"x")
        });
        assert_eq!(accepted.recv(1)?, b"x");
        late.join().expect("the sender ends")?;
        Ok(())
    }
}
