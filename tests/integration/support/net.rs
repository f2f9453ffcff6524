//! Loopback helpers: bounded reads and connections with timeouts.

use std::io::Read;
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use super::process::Running;
use super::wait_until;

/// How long a test waits on one socket operation.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP connection to `addr` with read and write timeouts set.
pub fn connect(addr: &str) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap_or_else(|err| panic!("connect {addr}: {err}"));
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("set timeout");
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .expect("set timeout");
    stream
}

/// Closes `stream` with a reset (`SO_LINGER` 0, then close): the peer's next read or
/// write fails with "connection reset".
pub fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER on a connected TCP socket");
}

/// Waits (at most `IO_TIMEOUT`) until the peer's kernel has acknowledged every byte
/// written to `stream` (`SIOCOUTQ` at 0): what was written is then the peer's, whenever
/// the peer's program reads it.
pub fn wait_acknowledged(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let unacknowledged = || {
        let mut queued: libc::c_int = 0;
        // SAFETY: SIOCOUTQ writes one int through the pointer, which points at a live c_int.
        let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
        assert_eq!(rc, 0, "SIOCOUTQ: {}", std::io::Error::last_os_error());
        queued
    };
    wait_until(
        IO_TIMEOUT,
        || format!("{} bytes never acknowledged", unacknowledged()),
        || unacknowledged() == 0,
    );
}

/// Everything `stream` sends until it closes, bounded by the read timeout.
pub fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    stream
        .read_to_end(&mut all)
        .expect("read to end within the timeout");
    all
}

/// `reader.read(buf)`, read again when a signal interrupts it. A socket read with a receive
/// timeout is never restarted by the kernel: after a signal handler or a stop and continue
/// of the process, even with no handler, it fails with `EINTR` (signal(7)), which a test
/// must not take for the peer's answer (seen once in CI: `recv_only_never_sends_stdin`).
pub fn read_once<R: Read + ?Sized>(reader: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// One read from `stream` that waits `limit` (again after a signal, [`read_once`]): `None`
/// when nothing came (no bytes, no end) in that time.
pub fn read_within(
    stream: &mut TcpStream,
    buf: &mut [u8],
    limit: Duration,
) -> Option<std::io::Result<usize>> {
    stream.set_read_timeout(Some(limit)).expect("set timeout");
    match read_once(stream, buf) {
        Err(err)
            if matches!(
                err.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            None
        }
        other => Some(other),
    }
}

/// Reads `stream` to its end, which must be a reset; returns what came before it.
pub fn read_to_reset(stream: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut got = Vec::new();
    match stream.read_to_end(&mut got) {
        Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => got,
        Err(err) => panic!("{what}: {err}, not a reset"),
        Ok(_) => panic!("{what}: a clean end after {got:?}, not a reset"),
    }
}

/// A deterministic pseudo-random payload of `len` bytes (xorshift), so a corrupted or
/// reordered byte is caught.
pub fn payload(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// FNV-1a, streamed: compares large transfers by a short digest.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    /// Adds bytes to the digest.
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }

    /// The digest so far.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// The digest of `bytes`.
pub fn hash(bytes: &[u8]) -> u64 {
    let mut fnv = Fnv::default();
    fnv.update(bytes);
    fnv.finish()
}

/// The accept queue of each LISTEN socket on TCP `port`: how many connections the kernel
/// completed for it that no one has accepted yet (read from /proc/net/tcp and tcp6, whose
/// receive-queue column counts them for a listener).
pub fn accept_queues(port: u16) -> Vec<u32> {
    let wanted = format!(":{port:04X}");
    let mut queues = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        // Columns: sl local_address rem_address st tx_queue:rx_queue ...; LISTEN is 0A.
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() > 4 && cols[1].ends_with(&wanted) && cols[3] == "0A" {
                let rx = cols[4].split(':').nth(1).unwrap_or("0");
                queues.push(u32::from_str_radix(rx, 16).unwrap_or(0));
            }
        }
    }
    queues
}

/// Waits until something listens on TCP `port` (read from /proc/net/tcp*), for tools like
/// `nc -l` that print no readiness line; a probe connection would use up their one accept.
pub fn wait_until_listening(port: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !is_listening(port) {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing listens on port {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether something listens on TCP `port` now (see [`wait_until_listening`]).
pub fn is_listening(port: u16) -> bool {
    let wanted = format!(":{port:04X} ");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        // Columns: sl local_address rem_address st ...; LISTEN is state 0A.
        text.lines().skip(1).any(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            cols.len() > 3 && format!("{} ", cols[1]).ends_with(&wanted) && cols[3] == "0A"
        })
    })
}

/// A one-shot server on 127.0.0.1:0, written in the test: runs `serve` on its first
/// connection (read timeout [`IO_TIMEOUT`]); its address as `127.0.0.1:PORT`.
pub fn one_shot<F>(serve: F) -> (String, std::thread::JoinHandle<()>)
where
    F: FnOnce(TcpStream) + Send + 'static,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        serve(stream);
    });
    (addr, handle)
}

/// A port that was free a moment ago, for tools that cannot be given port 0.
pub fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    probe.local_addr().expect("addr").port()
}

/// A TCP connection to `to` from the source address `from` (Linux routes all of 127/8 to
/// loopback, so 127.0.0.2 and 127.0.0.3 are other clients to the server), with timeouts.
pub fn connect_from(from: &str, to: std::net::SocketAddr) -> TcpStream {
    try_connect_from(from, to).unwrap_or_else(|err| panic!("connect {from} -> {to}: {err}"))
}

/// [`connect_from`], with a failed connect as an error rather than a panic (a refused
/// source may be reset before the connect call has returned).
pub fn try_connect_from(from: &str, to: std::net::SocketAddr) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    use std::net::{IpAddr, SocketAddr};
    let from: IpAddr = from.parse().expect("an address");
    // A dual-stack listener is reached on 127.0.0.1 by IPv4 sources and ::1 by IPv6 ones.
    let to = match from {
        IpAddr::V6(_) => SocketAddr::new("::1".parse().expect("::1"), to.port()),
        IpAddr::V4(_) if to.is_ipv6() => {
            SocketAddr::new("127.0.0.1".parse().expect("127.0.0.1"), to.port())
        }
        IpAddr::V4(_) => to,
    };
    let socket = Socket::new(Domain::for_address(to), Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(from, 0).into())?;
    socket.connect_timeout(&to.into(), IO_TIMEOUT)?;
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// `GET path` over HTTP/1.0 from `addr`: the status code and the body.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::Write;
    let mut stream = connect(addr);
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .expect("send the request");
    let answer = String::from_utf8(read_to_end(&mut stream)).expect("a text answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status code");
    (status, body.to_owned())
}

/// Where `clients` new connections to `server` queue, per listener, smallest first: the
/// server is stopped meanwhile (the kernel completes the connections all the same, as long
/// as the listen backlog has room), so each stays in the accept queue of the listener the
/// kernel picked. The server goes on after. A connection the backlog has no room for fails
/// the test (its handshake would only be retried a second later, and again).
pub fn queued_per_listener(server: &Running, clients: usize) -> (Vec<u32>, Vec<TcpStream>) {
    // One connection served first: the listeners are bound (and `listening on` printed)
    // before the server steers their group, which it does before it accepts.
    // Its end of stream comes back (with the greeting before it) once a loop accepted it.
    let mut first = connect(&server.addr());
    first.shutdown(Shutdown::Write).expect("shutdown");
    read_to_end(&mut first);
    server.signal(libc::SIGSTOP);
    // kill(2) returns before every thread has stopped: one still running could accept.
    let pid = server.pid();
    wait_until(
        Duration::from_secs(10),
        || format!("the threads of {pid} stop"),
        || all_threads_stopped(pid),
    );
    let addr: std::net::SocketAddr = server.addr().parse().expect("a socket address");
    let streams: Vec<TcpStream> = (0..clients)
        .map(|n| {
            let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .unwrap_or_else(|err| panic!("client {n} of {clients} to {addr}: {err}"));
            stream
                .set_read_timeout(Some(IO_TIMEOUT))
                .expect("set timeout");
            stream
        })
        .collect();
    let port = server.port();
    let total = || accept_queues(port).iter().sum::<u32>() as usize;
    wait_until(
        Duration::from_secs(10),
        || format!("queued: {:?} of {clients}", accept_queues(port)),
        || total() == clients,
    );
    let mut queues = accept_queues(port);
    server.signal(libc::SIGCONT);
    queues.sort_unstable();
    (queues, streams)
}

/// Whether every thread of `pid` is stopped (`T` in its `/proc` stat).
fn all_threads_stopped(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.filter_map(Result::ok).all(|task| {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // The state follows the command's closing parenthesis.
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('T'))
    })
}

/// The median time of `rounds` echo round trips of `len` bytes on `stream` (each message
/// written whole, then read back whole). A message longer than the server's read comes
/// back in pieces, and with Nagle's algorithm on at the server every piece after the first
/// waits for this client's delayed ACK: about 40 ms a round on Linux, where the round
/// takes well under a millisecond without it.
pub fn echo_round_trip_median(stream: &mut TcpStream, len: usize, rounds: usize) -> Duration {
    use std::io::Write;
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let message = payload(len);
    let mut back = vec![0u8; len];
    let mut times: Vec<Duration> = (0..rounds)
        .map(|_| {
            let started = std::time::Instant::now();
            stream.write_all(&message).expect("send the message");
            stream.read_exact(&mut back).expect("its echo");
            assert!(back == message, "the echo differs from the message");
            started.elapsed()
        })
        .collect();
    times.sort();
    times[rounds / 2]
}
