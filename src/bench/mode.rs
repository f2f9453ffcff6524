//! The three kinds of load, each one operation at a time: `greeting` (connect, read to end,
//! check, close), `echo` (stream verified blocks through one connection) and `idle` (open and
//! hold). Datagram endpoints do request/reply.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Config;
use super::stats::{Failure, HandshakeFailed, Stats};
use crate::endpoint::Endpoint;
use crate::net::{self, Stream};
use crate::socket::Address;

/// Where the load goes, resolved once before the run.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Tcp(std::net::SocketAddr),
    Unix(std::path::PathBuf),
    Udp(std::net::SocketAddr),
    Unixgram(std::path::PathBuf),
}

/// The first of `addresses` to take a connection (closed at once), if any: raced as
/// `connect` races them (Happy Eyeballs), so that an address that drops the handshake
/// costs a quarter of a second, not the probe's whole timeout.
fn first_taking(addresses: &[SocketAddr]) -> Option<SocketAddr> {
    let addresses: Vec<Address> = addresses.iter().copied().map(Address::from).collect();
    let socket = net::connect_racing(&addresses, Some(PROBE_TIMEOUT), false, |_| None).ok()?;
    socket.peer_addr().ok()?.as_socket_addr()
}

/// How long a probe connection to one of a name's addresses may take (see
/// [`Target::resolve`]).
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

impl Target {
    pub(crate) fn resolve(endpoint: &Endpoint) -> crate::Result<Target> {
        if let Some(path) = endpoint.path() {
            return Ok(if endpoint.transport().is_stream() {
                Target::Unix(path.to_path_buf())
            } else {
                Target::Unixgram(path.to_path_buf())
            });
        }
        // Resolve as a client would (a host is needed; names are looked up).
        let candidates: Vec<SocketAddr> = net::candidates(endpoint, None)?
            .into_iter()
            .filter_map(|a: Address| a.as_socket_addr())
            .collect();
        let Some(&first) = candidates.first() else {
            return Err(crate::Error::without_target(
                crate::error::Op::Resolve,
                io::ErrorKind::NotFound.into(),
            ));
        };
        if !endpoint.transport().is_stream() {
            return Ok(Target::Udp(first));
        }
        // A name of several addresses (`localhost`: ::1, then 127.0.0.1) is loaded at the
        // first that takes a connection, as `connect` would reach it: one probe connection
        // each, as wrk makes. None taking one, the first is loaded and its errors counted.
        Ok(Target::Tcp(match candidates.as_slice() {
            [_] => first,
            several => first_taking(several).unwrap_or(first),
        }))
    }

    pub(crate) fn is_datagram(&self) -> bool {
        matches!(self, Target::Udp(_) | Target::Unixgram(_))
    }

    async fn connect(&self) -> io::Result<Stream> {
        match self {
            Target::Tcp(addr) => Ok(Stream::Tcp(TcpStream::connect(addr).await?)),
            Target::Unix(path) => Ok(Stream::Unix(net::connect_unix(path).await?)),
            Target::Udp(_) | Target::Unixgram(_) => Err(io::ErrorKind::InvalidInput.into()),
        }
    }
}

/// The PROXY header a connection of `config` starts with (see [`Config::send_proxy`]):
/// its own source and destination, which only the connected socket knows.
pub(crate) fn proxy_header(
    config: &Config,
    local: io::Result<std::net::SocketAddr>,
    peer: io::Result<std::net::SocketAddr>,
) -> io::Result<Option<Vec<u8>>> {
    let Some(version) = config.send_proxy else {
        return Ok(None);
    };
    Ok(Some(crate::proxy_protocol::encode(
        version,
        Some(local?),
        Some(peer?),
    )))
}

/// The PROXY header for `stream`, if `config` sends one (TCP only).
fn header_of(config: &Config, stream: &Stream) -> io::Result<Option<Vec<u8>>> {
    match stream {
        Stream::Tcp(tcp) => proxy_header(config, tcp.local_addr(), tcp.peer_addr()),
        Stream::Unix(_) => Ok(None),
    }
}

/// Connects to `target` and sends the PROXY header on its own, if `config` asks for one.
async fn connect_with_header(target: &Target, config: &Config) -> io::Result<Stream> {
    let mut stream = target.connect().await?;
    if let Some(header) = header_of(config, &stream)? {
        stream.write_all(&header).await?;
    }
    Ok(stream)
}

/// A greeting connection: connect (and make the TLS handshake), read to end of stream,
/// compare, close; its latency counts from `started`. Returns whether it succeeded (a
/// failure is already counted).
pub(crate) async fn greeting(
    target: &Target,
    config: &Config,
    stats: &Stats,
    started: Instant,
) -> bool {
    let result = bounded(config.timeout, async {
        let stream = connect_with_header(target, config).await?;
        let mut got = Vec::with_capacity(config.expect.as_ref().map_or(64, Vec::len));
        match config.tls_target() {
            // The answer must end with close_notify: a cut one is an error.
            Some(_) => {
                handshake(config, stream)
                    .await?
                    .read_to_end(&mut got)
                    .await?
            }
            None => {
                let mut stream = stream;
                stream.read_to_end(&mut got).await?
            }
        };
        check_greeting(config, &got)?;
        Ok(got.len() as u64)
    })
    .await;
    record(stats, started, result)
}

/// The client's TLS handshake on `stream`, its failure marked as one ([`Failure::Tls`]).
async fn handshake(
    config: &Config,
    stream: Stream,
) -> io::Result<tokio_rustls::client::TlsStream<Stream>> {
    let Some((connector, host)) = config.tls_target() else {
        return Err(io::ErrorKind::InvalidInput.into());
    };
    // The handshake's small flights go out at once rather than wait on a delayed ACK.
    let _ = stream.set_nodelay();
    connector
        .connect(host, stream)
        .await
        .map_err(HandshakeFailed::wrap)
}

/// Request/reply over a datagram socket: send one datagram, wait for the answer, compare.
///
/// `buf` is the caller's, reused from request to request; it is sized to hold one byte more
/// than the longest right answer, so that a longer one shows as wrong rather than truncated.
/// Its latency counts from `started`. Returns whether it succeeded (a failure is already
/// counted).
pub(crate) async fn request(
    socket: &Datagram,
    buf: &mut Vec<u8>,
    config: &Config,
    stats: &Stats,
    started: Instant,
) -> bool {
    let payload = &config.payload[..config.size];
    let longest = match (&config.expect, config.echo) {
        (_, true) => config.size,
        (Some(expected), false) => expected.len(),
        (None, false) => 65_535,
    };
    buf.resize(longest + 1, 0);
    // An answer already waiting belongs to no request of ours (a server that answered the
    // last one twice): every request sends the same bytes, so it would pass for this one's.
    if let Err(err) = socket.discard_queued(buf) {
        return record(stats, started, Err(err));
    }
    let result = bounded(config.timeout, async {
        socket.send(payload).await?;
        let n = socket.recv(buf).await?;
        let got = &buf[..n];
        if config.echo && got != payload {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "echo differs"));
        }
        check(config, got)?;
        Ok(n as u64)
    })
    .await;
    record(stats, started, result)
}

/// A connected datagram socket for request/reply.
pub(crate) type Datagram = net::ConnectedDatagram;

/// A datagram socket connected to `target` (`udp:` or `unixgram:`).
pub(crate) fn open_datagram(target: &Target) -> io::Result<Datagram> {
    match target {
        Target::Udp(addr) => Datagram::open(&Address::from(*addr)),
        Target::Unixgram(path) => Datagram::open(&Address::unix(path.clone())),
        Target::Tcp(_) | Target::Unix(_) => Err(io::ErrorKind::InvalidInput.into()),
    }
}

/// One echo worker: a connection streaming blocks until `stop`, and a new connection (after
/// a pause) whenever one fails.
pub(crate) async fn echo(
    target: &Target,
    config: Arc<Config>,
    stats: Arc<Stats>,
    stop: super::Signal,
) {
    while !stop.is_set() && !stats.limit_reached_now() {
        match bounded(config.timeout, target.connect()).await {
            Ok(stream) => {
                let header = match header_of(&config, &stream) {
                    Ok(header) => header,
                    Err(err) => {
                        stats.fail_io(&err);
                        super::signal::pause(&stop).await;
                        continue;
                    }
                };
                let failed = echo_stream(stream, header, &config, &stats, &stop).await;
                if !failed {
                    return;
                }
            }
            Err(err) => stats.fail_io(&err),
        }
        super::signal::pause(&stop).await;
    }
}

/// One echo connection, streaming blocks of `size` bytes with at most `window` unanswered,
/// checking every byte that comes back, until `stop` says so. Each block's round trip is
/// one completed operation. Returns whether it ended by a failure (already counted).
async fn echo_stream(
    mut stream: Stream,
    header: Option<Vec<u8>>,
    config: &Arc<Config>,
    stats: &Stats,
    stop: &super::Signal,
) -> bool {
    if let Stream::Tcp(tcp) = &stream {
        // Echo blocks must go out at once, not wait for Nagle.
        let _ = tcp.set_nodelay(true);
    }
    match config.tls_target() {
        Some(_) => {
            // Before the handshake, in the clear: the handshake's bytes are not ours to
            // join it to.
            if let Some(header) = &header
                && let Err(err) = bounded(config.timeout, stream.write_all(header)).await
            {
                stats.fail_io(&err);
                return true;
            }
            match bounded(config.timeout, handshake(config, stream)).await {
                Ok(tls) => echo_over(tls, None, config, stats, stop).await,
                Err(err) => {
                    stats.fail_io(&err);
                    true
                }
            }
        }
        None => echo_over(stream, header, config, stats, stop).await,
    }
}

/// The echo stream of [`echo_stream`] over a connection, plain or TLS; whether it ended by a
/// failure.
async fn echo_over<S: AsyncRead + AsyncWrite>(
    stream: S,
    header: Option<Vec<u8>>,
    config: &Arc<Config>,
    stats: &Stats,
    stop: &super::Signal,
) -> bool {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let blocks_in_flight = (config.window / config.size.max(1)).max(1);
    let (sent_tx, mut sent_rx) = tokio::sync::mpsc::channel::<(Instant, usize)>(blocks_in_flight);
    let size = config.size;
    let writer_config = Arc::clone(config);
    let writer_stats = stats;
    let stopper = stop.clone();
    let write_side = async move {
        let mut header = header;
        for n in 0usize.. {
            // No block past `--count` (those in the window still come back, uncounted).
            if writer_stats.limit_reached_now() {
                break;
            }
            let permit = tokio::select! {
                permit = sent_tx.reserve() => permit,
                () = stopper.wait() => break,
            };
            let Ok(permit) = permit else { break };
            permit.send((Instant::now(), n));
            // The flush matters under TLS: a record the socket did not take at once
            // would otherwise wait for the next block.
            let sent = match header.take() {
                // The header and the first block in one send, as a proxy's client would.
                Some(mut first) => {
                    first.extend_from_slice(block(&writer_config, n));
                    writer.write_all(&first).await
                }
                None => writer.write_all(block(&writer_config, n)).await,
            };
            if sent.is_err() || writer.flush().await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    };
    let read_side = async {
        // At most 64 KiB at a time, compared piece by piece: the memory of a worker does
        // not grow with the block size.
        let mut buf = vec![0u8; size.min(64 * 1024)];
        while let Some((sent_at, n)) = sent_rx.recv().await {
            let expected = block(config, n);
            let read = bounded(
                config.timeout,
                read_and_compare(&mut reader, &mut buf, expected),
            );
            match read.await {
                Ok(true) => stats.complete(sent_at.elapsed(), size as u64),
                Ok(false) => {
                    stats.fail(Failure::WrongBytes);
                    return true;
                }
                Err(err) => {
                    stats.fail_io(&err);
                    return true;
                }
            }
        }
        false
    };
    // A read that fails ends the connection: the write side goes with it (it may be
    // waiting for room in the window, which only reads make), and the worker reconnects.
    // A write side that ends first (the stop, or a failed write) leaves the reads of the
    // blocks already sent to finish.
    tokio::pin!(write_side, read_side);
    tokio::select! {
        failed = &mut read_side => failed,
        () = &mut write_side => read_side.await,
    }
}

/// Reads `expected.len()` bytes through `buf` and says whether they are `expected`.
async fn read_and_compare(
    reader: &mut (impl tokio::io::AsyncRead + Unpin),
    buf: &mut [u8],
    expected: &[u8],
) -> io::Result<bool> {
    let mut same = true;
    for piece in expected.chunks(buf.len().max(1)) {
        let got = &mut buf[..piece.len()];
        reader.read_exact(got).await?;
        same &= got == piece;
    }
    Ok(same)
}

/// Block `n` of an echo stream: `size` bytes of the payload from an offset that changes
/// from block to block (the payload is `size` + [`super::config::PAYLOAD_SLACK`] bytes), so a block
/// echoed twice or out of order does not compare equal.
fn block(config: &Config, n: usize) -> &[u8] {
    let start = (n * 7) % super::config::PAYLOAD_SLACK;
    &config.payload[start..start + config.size]
}

/// One idle connection: open it (through the TLS handshake for `tls:`) and hand it over to
/// be held; a TLS session's state is dropped, and its socket held as it is.
pub(crate) async fn idle(target: &Target, config: &Config, stats: &Stats) -> Option<Stream> {
    let started = Instant::now();
    let open = async {
        let stream = connect_with_header(target, config).await?;
        match config.tls_target() {
            Some(_) => Ok(handshake(config, stream).await?.into_inner().0),
            None => Ok(stream),
        }
    };
    match bounded(config.timeout, open).await {
        Ok(stream) => {
            stats.complete(started.elapsed(), 0);
            Some(stream)
        }
        Err(err) => {
            stats.fail_io(&err);
            None
        }
    }
}

/// Whether the server still holds `stream` open: whatever it sent is read, and what is left
/// is "nothing yet" rather than end of stream or an error.
pub(crate) fn still_open(stream: &Stream) -> bool {
    // Asked of the socket itself (it is non-blocking), not of tokio's cached readiness,
    // which an unpolled connection never updated.
    let socket = match stream {
        Stream::Tcp(s) => socket2::SockRef::from(s),
        Stream::Unix(s) => socket2::SockRef::from(s),
    };
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
    loop {
        match socket.recv(&mut buf) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(err) => return err.kind() == io::ErrorKind::WouldBlock,
        }
    }
}

fn check(config: &Config, got: &[u8]) -> io::Result<()> {
    match &config.expect {
        Some(expected) if got != expected.as_slice() => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "unexpected bytes",
        )),
        _ => Ok(()),
    }
}

/// A stream greeting's whole answer checked: [`check`], and without `--expect` at least one
/// byte (a server that closes without a word is not greeting: an `eof` failure, as wrk and
/// ab count a connection closed before its response).
pub(crate) fn check_greeting(config: &Config, got: &[u8]) -> io::Result<()> {
    if got.is_empty() && config.expect.is_none() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "closed without an answer",
        ));
    }
    check(config, got)
}

async fn bounded<T>(limit: Duration, work: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(limit, work)
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
}

/// Counts the outcome of an operation begun at `started`; whether it succeeded.
fn record(stats: &Stats, started: Instant, result: io::Result<u64>) -> bool {
    match result {
        Ok(bytes) => {
            stats.complete(started.elapsed(), bytes);
            true
        }
        Err(err) => {
            stats.fail_io(&err);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name's addresses in order, the first refusing (as `localhost`'s ::1 does when the
    /// server listens on 127.0.0.1 only): the load goes to the one that takes connections.
    #[test]
    fn a_name_is_loaded_at_its_first_address_that_takes_a_connection() -> io::Result<()> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let serving = listener.local_addr()?;
        let refusing = {
            let closed = std::net::TcpListener::bind("127.0.0.1:0")?;
            closed.local_addr()?
        };
        assert_eq!(first_taking(&[refusing, serving]), Some(serving));
        assert_eq!(first_taking(&[serving, refusing]), Some(serving));
        assert_eq!(first_taking(&[refusing]), None);
        Ok(())
    }

    /// A first address that drops the handshake (a listener whose backlog-0 queue is full)
    /// costs the race's quarter of a second, not the probe's whole second (an outside
    /// audit: `--timeout 100ms` made a 1 s run take 2).
    #[test]
    fn an_address_that_drops_the_handshake_is_not_waited_out() -> io::Result<()> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let serving = listener.local_addr()?;
        let hole =
            crate::socket::Socket::new(crate::socket::Family::Inet, crate::socket::Type::Stream)
                .map_err(crate::Error::into_io_error)?;
        hole.bind(("127.0.0.1", 0))
            .map_err(crate::Error::into_io_error)?;
        hole.listen(0).map_err(crate::Error::into_io_error)?;
        let dropping = hole
            .local_addr()
            .ok()
            .and_then(|address| address.as_socket_addr())
            .expect("a TCP address");
        let _filler = std::net::TcpStream::connect(dropping)?;
        let started = std::time::Instant::now();
        assert_eq!(first_taking(&[dropping, serving]), Some(serving));
        let took = started.elapsed();
        assert!(took < Duration::from_millis(900), "{took:?}");
        Ok(())
    }
}
