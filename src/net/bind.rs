//! Binding an endpoint of any transport: the socket options a server wants, one dual-stack
//! socket for `:PORT`, the Unix file rules, and sets of `SO_REUSEPORT` sockets on one port.

use std::io;
use std::time::{Duration, Instant};

use super::unix_file::{UnixFile, bind_unix};
use crate::endpoint::{Endpoint, Host, HostPort, Transport};
use crate::error::{Error, Op, Result};
use crate::socket::{Address, Family, Socket, ToAddress, Type};

/// Options that shape how a listening socket is created.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ListenOptions {
    /// The `listen(2)` backlog (stream sockets).
    pub(crate) backlog: i32,
    /// The permission bits of a Unix socket file.
    pub(crate) unix_mode: Option<u32>,
    /// Set `SO_REUSEPORT`, so that sibling sockets can share the port.
    pub(crate) reuse_port: bool,
    /// An unspecified IPv6 address (`[::]`) takes IPv6 alone, not IPv4 too (`nc -6 -l`).
    pub(crate) only_v6: bool,
}

/// A bound socket (listening, for streams), in blocking mode, with the endpoint it really
/// serves and, for a Unix endpoint, the guard that removes its socket file.
#[derive(Debug)]
pub(crate) struct Bound {
    /// The socket.
    pub(crate) socket: Socket,
    /// The endpoint really bound (the port the system chose for port 0).
    pub(crate) endpoint: Endpoint,
    /// The socket file of a Unix endpoint; hold it as long as the socket.
    pub(crate) file: Option<UnixFile>,
}

/// Binds `endpoint`. The server and `socketkit listen` both bind through it.
pub(crate) fn bind_endpoint(endpoint: &Endpoint, options: ListenOptions) -> Result<Bound> {
    let (socket, file) = match endpoint {
        // TLS is TCP at this floor: the session is the server's or client's business.
        Endpoint::Tcp(hp) | Endpoint::Tls(hp) => {
            (bind_ip(hp, Type::Stream, options, endpoint)?, None)
        }
        Endpoint::Udp(hp) => (bind_ip(hp, Type::Datagram, options, endpoint)?, None),
        Endpoint::Unix(path) | Endpoint::Unixgram(path) => {
            let ty = if endpoint.transport().is_stream() {
                Type::Stream
            } else {
                Type::Datagram
            };
            let (socket, file) = bind_unix(path, ty, options, endpoint)?;
            (socket, Some(file))
        }
    };
    let endpoint = match endpoint {
        Endpoint::Unix(_) | Endpoint::Unixgram(_) => endpoint.clone(),
        Endpoint::Tcp(_) | Endpoint::Tls(_) | Endpoint::Udp(_) => {
            super::endpoint_at(endpoint.transport(), &socket.local_addr()?)
        }
    };
    Ok(Bound {
        socket,
        endpoint,
        file,
    })
}

/// Binds `count` sockets on one TCP port with `SO_REUSEPORT` (the kernel then spreads
/// connections over them), or fewer where the kernel refuses: at least one, the first,
/// which several accept loops can then share. Other transports get one socket.
pub(crate) fn bind_reuse_port_set(
    endpoint: &Endpoint,
    options: ListenOptions,
    count: usize,
) -> Result<Vec<Bound>> {
    if count <= 1 || !matches!(endpoint, Endpoint::Tcp(_) | Endpoint::Tls(_)) {
        return Ok(vec![bind_endpoint(endpoint, options)?]);
    }
    // SO_REUSEPORT would let us share a port another server of the same user holds. Claim
    // it alone first, so "address already in use" is still an error, then let the set take
    // the port the probe got.
    let port = bind_endpoint(endpoint, options)?.endpoint;
    let options = ListenOptions {
        reuse_port: true,
        ..options
    };
    let first = bind_endpoint(&port, options)?;
    let mut set = vec![first];
    // A kernel without SO_REUSEPORT (or one that refuses it) answers EADDRINUSE: the set
    // stops there.
    while set.len() < count {
        match bind_endpoint(&port, options) {
            Ok(sibling) => set.push(sibling),
            Err(_) => break,
        }
    }
    Ok(set)
}

/// A bound (and, for streams, listening) IP socket for `hp`.
fn bind_ip(hp: &HostPort, ty: Type, options: ListenOptions, endpoint: &Endpoint) -> Result<Socket> {
    let addresses: Vec<Address> = match &hp.host {
        // One dual-stack socket serves IPv4 and IPv6 on one port (port 0 must stay one port);
        // where the kernel has no IPv6, fall back to IPv4 alone.
        Host::Any => vec![
            Address::from(std::net::SocketAddr::from(([0u16; 8], hp.port))),
            Address::from(std::net::SocketAddr::from(([0u8; 4], hp.port))),
        ],
        Host::Ip(ip) => vec![Address::from(std::net::SocketAddr::new(*ip, hp.port))],
        Host::Name(name) => {
            let found = (name.as_str(), hp.port).to_addresses(None)?;
            found.into_iter().take(1).collect()
        }
    };
    let mut last = None;
    for address in &addresses {
        match bind_ip_on(address, ty, options, endpoint.transport()) {
            Ok(socket) => return Ok(socket),
            Err(err) if ipv6_missing(&err) && addresses.len() > 1 => last = Some(err),
            Err(err) => return Err(err),
        }
    }
    Err(last.unwrap_or_else(|| Error::new(Op::Listen, endpoint, io::ErrorKind::NotFound.into())))
}

/// How long a bind that finds its port taken tries again before it says so.
const PORT_PATIENCE: Duration = Duration::from_millis(200);

/// `bind(2)`; when the port is taken and `patient`, again every 10 ms for up to
/// [`PORT_PATIENCE`]. A server restarted the moment its predecessor died finds the port
/// held for a few milliseconds more: a killed io_uring server's listener lives until the
/// kernel has torn its ring down, after the process is gone (measured: 5–12 ms, every time
/// the server had served connections), and a restart loop would fail on it. A port another
/// server holds is still refused, 200 ms later. Not for `SO_REUSEPORT` siblings, whose
/// refusal is the quick fallback where the kernel lacks the option.
fn bind_patiently(socket: &Socket, address: &Address, patient: bool) -> Result<()> {
    let deadline = Instant::now() + PORT_PATIENCE;
    loop {
        match socket.bind(address) {
            Err(err)
                if patient
                    && err.io_error().raw_os_error() == Some(libc::EADDRINUSE)
                    && address.port().is_some_and(|port| port != 0)
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

fn ipv6_missing(err: &Error) -> bool {
    matches!(
        err.io_error().raw_os_error(),
        Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL)
    )
}

fn bind_ip_on(
    address: &Address,
    ty: Type,
    options: ListenOptions,
    transport: Transport,
) -> Result<Socket> {
    let setup = || -> Result<Socket> {
        let socket = Socket::new(address.family(), ty)?;
        // SO_REUSEADDR: a restarted server binds its port even with old connections in
        // TIME_WAIT, as Python's create_server does on POSIX. Streams only: on a datagram
        // socket it lets a second one bind the same port (two servers, or one and any other
        // that sets it), and the newest silently takes every datagram from the one that
        // serves; UDP has no TIME_WAIT to wait out.
        if ty == Type::Stream {
            socket.set_reuse_address(true)?;
        }
        if options.reuse_port {
            // Where the option is missing the siblings fail to bind and the listener is
            // shared instead; that is the fallback, so the error itself is not one.
            let _ = socket.set_reuse_port(true);
        }
        if address.family() == Family::Inet6 {
            let dual = !options.only_v6 && address.ip().is_some_and(|ip| ip.is_unspecified());
            socket.set_only_v6(!dual)?;
        }
        bind_patiently(&socket, address, !options.reuse_port)?;
        if ty == Type::Stream {
            socket.listen(options.backlog)?;
        }
        Ok(socket)
    };
    setup().map_err(|err| {
        Error::new(
            Op::Listen,
            super::endpoint_at(transport, address),
            err.into_io_error(),
        )
    })
}
