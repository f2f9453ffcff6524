//! `listen`: the netcat listener. Bind an endpoint, then hand out its peers one at a time —
//! accepted connections for streams, the first sender for datagrams.

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use crate::endpoint::{Endpoint, Transport};
use crate::error::{Error, Op, Result};
use crate::net::{self, Bound, ListenOptions, UnixFile, UnixFileRemover, bind_endpoint};
use crate::socket::{Address, Family, Socket};

/// A bound listening endpoint, waiting for peers.
#[derive(Debug)]
pub struct Listening {
    socket: Socket,
    endpoint: Endpoint,
    // Declared after the socket: fields drop in order, so the socket closes before its file
    // is removed.
    file: Option<UnixFile>,
}

/// Binds `endpoint` for [`Listening::accept`] (streams) or [`Listening::first_datagram`]
/// (datagrams), with the socket-file rules of `serve` for Unix paths.
///
/// A `tls:` endpoint is refused: the sockets accepted would be plain, and what is written
/// to them would go out in the clear. Bind its TCP listener with [`listen_transport`] and
/// run each session with [`bridge_tls`](super::bridge_tls).
///
/// # Errors
///
/// `cannot listen on ENDPOINT: REASON`; `InvalidInput` for a `tls:` endpoint.
///
/// # Examples
///
/// ```
/// let listening = socketkit::client::listen(&"127.0.0.1:0".parse().unwrap())?;
/// let addr = listening.local_endpoint().to_string();
/// assert!(addr.starts_with("tcp:127.0.0.1:"));
/// # Ok::<(), socketkit::Error>(())
/// ```
pub fn listen(endpoint: &Endpoint) -> Result<Listening> {
    listen_only_v6(endpoint, false)
}

/// As [`listen`]; with `only_v6`, an unspecified IPv6 address (`[::]`) takes IPv6 alone
/// rather than IPv4 as well (`nc -6 -l`).
///
/// # Errors
///
/// As [`listen`].
pub fn listen_only_v6(endpoint: &Endpoint, only_v6: bool) -> Result<Listening> {
    super::refuse_tls(endpoint, Op::Listen, "listen_transport")?;
    listen_transport(endpoint, only_v6)
}

/// As [`listen_only_v6`]; for a `tls:` endpoint, the TCP listener whose connections a TLS
/// session then runs over ([`bridge_tls`](super::bridge_tls) with
/// [`Handshake::Server`](super::Handshake::Server)): until it does, bytes written to an
/// accepted socket go out in the clear.
///
/// # Errors
///
/// As [`listen`], but for the refusal of `tls:`.
pub fn listen_transport(endpoint: &Endpoint, only_v6: bool) -> Result<Listening> {
    let options = ListenOptions {
        backlog: 16,
        unix_mode: None,
        reuse_port: false,
        only_v6,
    };
    let Bound {
        socket,
        endpoint,
        file,
    } = bind_endpoint(endpoint, options)?;
    Ok(Listening {
        socket,
        endpoint,
        file,
    })
}

/// Adopts `fd`, a socket a parent passed down (socket activation's `fd:N`; the server's
/// `InheritedSocket::into_fd` gives it, checked), for [`Listening::accept`] (a listening
/// stream socket) or [`Listening::first_datagram`] (a bound datagram socket). Its endpoint
/// is the socket's real address; `name` (`fd:3`) is what errors call it. The socket file of
/// an inherited Unix socket is not ours, so it is never removed. The socket is made
/// blocking, as `accept` and `first_datagram` wait.
///
/// # Errors
///
/// `cannot listen on NAME: REASON`, where the reason says what the descriptor is instead: not
/// a socket, a stream socket that is not listening, a socket bound to no address.
pub fn listen_inherited(fd: OwnedFd, name: &str) -> Result<Listening> {
    let Bound {
        socket,
        endpoint,
        file,
    } = net::adopt(fd, name)?;
    socket.set_blocking(true)?;
    Ok(Listening {
        socket,
        endpoint,
        file,
    })
}

impl Listening {
    /// The same TCP listener, whose connections a TLS session then runs over (as
    /// [`listen_transport`] gives for a `tls:` endpoint): its endpoint becomes `tls:`.
    ///
    /// # Errors
    ///
    /// `cannot listen on ENDPOINT: REASON` for a listener that is not TCP.
    pub fn speaking_tls(self) -> Result<Listening> {
        let name = self.endpoint.to_string();
        let Bound {
            socket,
            endpoint,
            file,
        } = net::speaking_tls(
            Bound {
                socket: self.socket,
                endpoint: self.endpoint,
                file: self.file,
            },
            &name,
        )?;
        Ok(Listening {
            socket,
            endpoint,
            file,
        })
    }

    /// The endpoint really listened on (with the port the system chose for port 0).
    pub fn local_endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Waits for the next connection on a stream endpoint. A TCP connection comes with
    /// `TCP_NODELAY`, as `connect`'s does: what the bridge reads from its input goes out as
    /// it comes, and a reply written in two pieces is not held for the peer's delayed ACK.
    ///
    /// # Errors
    ///
    /// `cannot accept on ENDPOINT: REASON`.
    pub fn accept(&self) -> Result<(Socket, Address)> {
        let (socket, peer) = self
            .socket
            .accept()
            .map_err(|err| Error::new(Op::Accept, &self.endpoint, err.into_io_error()))?;
        if matches!(socket.family(), Family::Inet | Family::Inet6) {
            // Only latency rides on it; a socket that refuses it still bridges.
            let _ = socket.set_nodelay(true);
        }
        Ok((socket, peer))
    }

    /// Waits for the first datagram on a datagram endpoint and connects the socket to its
    /// sender, so that replies go there and only its datagrams arrive after it. Returns the
    /// datagram and the sender; the connected socket is [`Listening::socket_mut`], and a Unix
    /// socket file stays in place (the sender keeps sending to it) until the `Listening` drops.
    ///
    /// A Unix sender without an address (an unbound socket, as `logger -u` and most
    /// syslog-style senders use) cannot be answered: the socket then stays unconnected and
    /// receives from every sender; the address returned is unnamed
    /// ([`Address::as_path`] is `None`).
    ///
    /// # Errors
    ///
    /// `cannot receive on ENDPOINT: REASON`.
    pub fn first_datagram(&mut self) -> Result<(Vec<u8>, Address)> {
        self.first_datagram_from(|_| true)
    }

    /// As [`Listening::first_datagram`], skipping (dropping) datagrams from senders that
    /// `admit` refuses.
    ///
    /// # Errors
    ///
    /// As [`Listening::first_datagram`].
    pub fn first_datagram_from(
        &mut self,
        mut admit: impl FnMut(&Address) -> bool,
    ) -> Result<(Vec<u8>, Address)> {
        let fail = |err: io::Error| Error::at_local(Op::Receive, &self.endpoint, err);
        let mut buf = Vec::new();
        let (data, peer) = loop {
            let (len, peer) =
                super::recv_whole(&self.socket, &mut buf).map_err(|e| fail(e.into_io_error()))?;
            if admit(&peer) {
                break (buf[..len].to_vec(), peer);
            }
        };
        if self.endpoint.transport() == Transport::Unixgram && peer.as_path().is_none() {
            return Ok((data, peer));
        }
        self.socket
            .connect(&peer)
            .map_err(|e| fail(e.into_io_error()))?;
        Ok((data, peer))
    }

    /// The listening socket itself; after [`Listening::first_datagram`], connected to the
    /// first sender.
    pub fn socket_mut(&mut self) -> &mut Socket {
        &mut self.socket
    }

    /// The socket file this listener made (`unix:` and `unixgram:` paths; not an abstract
    /// name), for removing it where dropping the listener cannot: from a thread that caught
    /// the signal ending the process.
    ///
    /// # Examples
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("l.sock");
    /// let endpoint = format!("unix:{}", path.display()).parse()?;
    /// let listening = socketkit::client::listen(&endpoint)?;
    /// let file = listening.socket_file().expect("a unix: path has a file");
    /// file.remove();
    /// assert!(!path.exists());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn socket_file(&self) -> Option<SocketFile> {
        self.file
            .as_ref()
            .and_then(UnixFile::remover)
            .map(SocketFile)
    }
}

/// The socket file of a Unix [`Listening`] or of a Unix datagram client
/// ([`Connected::socket_file`](super::Connected::socket_file)), removable from any thread;
/// see [`Listening::socket_file`].
#[derive(Debug, Clone)]
pub struct SocketFile(pub(super) UnixFileRemover);

impl SocketFile {
    /// Where the file is.
    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Removes the file if it is still the one the listener made (another server may have
    /// replaced it since); nothing when the listener has already removed it.
    pub fn remove(&self) {
        self.0.remove();
    }
}

/// Ends the process the way `signal` would have had nothing caught it: its default action
/// is restored and the signal raised, so that the parent sees a death by the signal (a
/// shell's `$?` is 128 + N, and a shell loop stops on SIGINT as it does for nc). For a
/// program that catches SIGINT or SIGTERM only to clean up first ([`SocketFile::remove`]).
/// Should the signal not end the process (one whose default action is to be ignored), it
/// exits with 128 + N.
pub fn die_by_signal(signal: i32) -> ! {
    if let Err(err) = net::raise_with_default_action(signal) {
        tracing::debug!("cannot raise signal {signal}: {err}");
    }
    std::process::exit(128 + signal)
}
