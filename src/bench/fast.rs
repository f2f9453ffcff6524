//! The greeting engine for closed-loop TCP and Unix runs: a bare readiness loop on mio, one
//! per thread, in the shape of the C `loadgen`. Per connection it costs `socket`, `connect`,
//! one `epoll_ctl`, the reads and `close` — no task, no deregistration, no timer entry (the
//! per-operation timeout is a scan of a queue ordered by start time).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use super::mode::Target;
use super::stats::{Failure, Stats};
use super::{Config, Signal};

/// How long one `epoll_wait` may block before the loop checks the end and the timeouts.
const TICK: Duration = Duration::from_millis(10);

enum Socket {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
}

impl Socket {
    fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Socket::Tcp(s) => s,
            Socket::Unix(s) => s,
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.read(buf),
            Socket::Unix(s) => s.read(buf),
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write(buf),
            Socket::Unix(s) => s.write(buf),
        }
    }
}

struct Conn {
    socket: Socket,
    started: Instant,
    received: usize,
    matches: bool,
    /// `--send-proxy`: the PROXY header still to send, once the connect completes.
    header: Option<Vec<u8>>,
}

impl Conn {
    /// Sends what is left of the PROXY header, if the connection can take it now; an error
    /// ends the connection.
    fn send_header(&mut self) -> io::Result<()> {
        let Some(header) = &mut self.header else {
            return Ok(());
        };
        match self.socket.write(header) {
            Ok(n) if n == header.len() => self.header = None,
            Ok(n) => {
                header.drain(..n);
            }
            // Still connecting: the writable event of the completed connect comes later.
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::NotConnected
                ) => {}
            Err(err) => return Err(err),
        }
        Ok(())
    }
}

/// One thread's connections: their slots, and the order in which they started (for the
/// timeout scan).
struct Engine<'a> {
    poll: Poll,
    target: &'a Target,
    config: &'a Config,
    stats: &'a Stats,
    slots: Vec<Option<Conn>>,
    /// Per slot, bumped every time the slot is (re)opened, so a stale entry of `started`
    /// (a connection that already ended) is recognised.
    generations: Vec<u64>,
    started: VecDeque<(Instant, usize, u64)>,
    /// Slots whose connection failed (could not start, was refused or reset, timed out,
    /// answered wrong), with when: each is retried [`super::signal::RETRY_PAUSE`] later.
    retry: VecDeque<(Instant, usize)>,
}

/// Keeps `connections` greeting connections in flight until `ending`.
pub(crate) fn greeting_loop(
    target: &Target,
    config: &Config,
    connections: usize,
    stats: &Stats,
    ending: &Signal,
) -> io::Result<()> {
    let mut engine = Engine {
        poll: Poll::new()?,
        target,
        config,
        stats,
        slots: (0..connections).map(|_| None).collect(),
        generations: vec![0; connections],
        started: VecDeque::with_capacity(connections),
        retry: VecDeque::new(),
    };
    let mut events = Events::with_capacity(1024);
    let mut buf = [0u8; 4096];
    for slot in 0..connections {
        // Opening many thousands takes a while: the end of the run may come first.
        if slot % 1024 == 0 && ending.is_set() {
            return Ok(());
        }
        engine.open(slot);
    }
    let mut free = Vec::with_capacity(connections);
    while !ending.is_set() {
        engine.poll.poll(&mut events, Some(TICK))?;
        for event in events.iter() {
            let slot = event.token().0;
            let finished = match engine.slots.get_mut(slot).and_then(Option::as_mut) {
                Some(conn) => match conn.send_header() {
                    Ok(()) => drain(conn, &mut buf, config),
                    Err(err) => Some(Err(err)),
                },
                None => continue,
            };
            if let Some(outcome) = finished {
                let Some(conn) = engine.slots[slot].take() else {
                    continue;
                };
                match outcome {
                    Ok(()) => {
                        stats.complete(conn.started.elapsed(), conn.received as u64);
                        free.push(slot);
                    }
                    // A refused, reset or wrong answer: the slot pauses before its next
                    // try, as every failed operation does, or a refused port is a busy loop.
                    Err(err) => {
                        stats.fail_io(&err);
                        engine.retry.push_back((Instant::now(), slot));
                    }
                }
            }
        }
        // Refill in one burst after the events, as loadgen does: the server then wakes
        // once for many new connections instead of once per connection (each wake-up of a
        // sleeping server costs the connecting side an inter-processor interrupt).
        // None past `--count` or the end: the run is over, and the server would see them
        // uncounted.
        if stats.limit_reached_now() || ending.is_set() {
            return Ok(());
        }
        for slot in free.drain(..) {
            engine.open(slot);
        }
        engine.expire(config.timeout);
        engine.retry_due();
    }
    Ok(())
}

/// Reads what arrived; `Some` once the connection is over (end of stream or an error;
/// wrong bytes are an `InvalidData` error).
fn drain(conn: &mut Conn, buf: &mut [u8], config: &Config) -> Option<io::Result<()>> {
    loop {
        match conn.socket.read(buf) {
            Ok(0) => {
                let complete = config
                    .expect
                    .as_ref()
                    .is_none_or(|e| conn.received == e.len());
                return Some(match (conn.matches && complete, conn.received) {
                    // A close without a word is no greeting (`mode::check_greeting`).
                    (true, 0) if config.expect.is_none() => {
                        Err(io::ErrorKind::UnexpectedEof.into())
                    }
                    (true, _) => Ok(()),
                    (false, _) => Err(io::ErrorKind::InvalidData.into()),
                });
            }
            Ok(n) => {
                if let Some(expected) = &config.expect {
                    let end = conn.received + n;
                    conn.matches &= expected.get(conn.received..end) == Some(&buf[..n]);
                }
                conn.received += n;
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return None,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Some(Err(err)),
        }
    }
}

impl Engine<'_> {
    /// Opens a new connection in `slot`; a failure to even start one is counted and the
    /// slot is retried after a pause, not in a tight loop.
    fn open(&mut self, slot: usize) {
        let now = Instant::now();
        self.generations[slot] += 1;
        let generation = self.generations[slot];
        self.started.push_back((now, slot, generation));
        let socket = match self.target {
            Target::Tcp(addr) => connect_tcp(*addr, slot).map(Socket::Tcp),
            Target::Unix(path) => crate::net::unix_address(path)
                .and_then(|address| mio::net::UnixStream::connect_addr(&address))
                .map(Socket::Unix),
            Target::Udp(_) | Target::Unixgram(_) => Err(io::ErrorKind::InvalidInput.into()),
        };
        let registered = socket.and_then(|mut socket| {
            let header = match (&socket, self.target) {
                (Socket::Tcp(tcp), Target::Tcp(addr)) => {
                    super::mode::proxy_header(self.config, tcp.local_addr(), Ok(*addr))?
                }
                _ => None,
            };
            // With a header to send, the completed connect's writable event says when.
            let interest = match header {
                Some(_) => Interest::READABLE | Interest::WRITABLE,
                None => Interest::READABLE,
            };
            self.poll
                .registry()
                .register(socket.source(), Token(slot), interest)?;
            Ok((socket, header))
        });
        match registered {
            Ok((socket, header)) => {
                let mut conn = Conn {
                    socket,
                    started: now,
                    received: 0,
                    matches: true,
                    header,
                };
                // On loopback the connect has usually completed already.
                if let Err(err) = conn.send_header() {
                    self.stats.fail_io(&err);
                    self.retry.push_back((now, slot));
                    return;
                }
                self.slots[slot] = Some(conn);
            }
            Err(err) => {
                self.stats.fail_io(&err);
                self.retry.push_back((now, slot));
            }
        }
    }

    /// Reopens the slots whose retry pause is over.
    fn retry_due(&mut self) {
        while let Some(&(failed, slot)) = self.retry.front() {
            if failed.elapsed() < super::signal::RETRY_PAUSE {
                break;
            }
            self.retry.pop_front();
            if self.slots[slot].is_none() {
                self.open(slot);
            }
        }
    }

    /// Fails connections older than `timeout`; their slots are reopened after the pause.
    fn expire(&mut self, timeout: Duration) {
        while let Some(&(at, slot, generation)) = self.started.front() {
            if at.elapsed() < timeout {
                break;
            }
            self.started.pop_front();
            if generation != self.generations[slot] {
                continue; // that connection already ended; its slot was reused
            }
            // A slot left empty by a failed open is on the retry queue instead.
            if self.slots[slot].take().is_some() {
                self.stats.fail(Failure::Timeout);
                self.retry.push_back((Instant::now(), slot));
            }
        }
    }
}

/// How many loopback source addresses (127.0.0.1 to 127.0.0.8) connections to an IPv4
/// loopback target are spread over, as `loadgen --src 8` does.
const SOURCES: u8 = 8;

/// Set once a source address past 127.0.0.1 could not be bound: the loopback interface
/// holds only 127.0.0.1, and connections are no longer spread.
static SOURCES_MISSING: AtomicBool = AtomicBool::new(false);

/// A non-blocking TCP connect. Towards IPv4 loopback the source address rotates over
/// [`SOURCES`] addresses (with `IP_BIND_ADDRESS_NO_PORT`, so the port is still picked at
/// connect time): the server's TIME_WAIT entries then leave the kernel more free 4-tuples,
/// and picking a port stays cheap at tens of thousands of connections a second.
fn connect_tcp(addr: std::net::SocketAddr, slot: usize) -> io::Result<mio::net::TcpStream> {
    let std::net::SocketAddr::V4(v4) = addr else {
        return mio::net::TcpStream::connect(addr);
    };
    if !v4.ip().is_loopback() {
        return mio::net::TcpStream::connect(addr);
    }
    // SOCK_NONBLOCK at creation: no fcntl round trip per connection.
    let ty = socket2::Type::STREAM.nonblocking();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, ty, None)?;
    if !SOURCES_MISSING.load(Ordering::Relaxed) {
        let octet = 1 + (slot % usize::from(SOURCES)) as u8;
        let source = std::net::SocketAddrV4::new(std::net::Ipv4Addr::new(127, 0, 0, octet), 0);
        // Best effort: without the option the bind still works, it just picks the port early.
        let _ = crate::net::set_bind_address_no_port(&socket);
        match socket.bind(&source.into()) {
            Ok(()) => {}
            // A loopback that holds 127.0.0.1 alone (`127.0.0.1/32`, as some containers
            // have): the connections come from where the kernel picks, every one of them
            // from now on (the socket is still unbound).
            Err(err) if err.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
                if !SOURCES_MISSING.swap(true, Ordering::Relaxed) {
                    tracing::info!(
                        "{source} is not on the loopback interface: connections come from \
                         127.0.0.1 alone"
                    );
                }
            }
            Err(err) => return Err(err),
        }
    }
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(err) if err.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(err) => return Err(err),
    }
    Ok(mio::net::TcpStream::from_std(socket.into()))
}
