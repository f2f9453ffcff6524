//! Probing a range of ports, as `nc -z HOST 20-30` does: a connection to each port, closed
//! as soon as it is made, with nothing sent. The host is resolved once; each port is tried
//! on its addresses in order, as a single connect tries them. Several ports are probed at
//! once (a port that drops the handshake costs its whole timeout, and a host has
//! thousands), and the outcomes are reported in port order all the same. And a TLS port,
//! probed as `ncat --ssl -z` does: with the handshake ([`probe_tls`]).

use std::collections::BTreeMap;
use std::io;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::{ConnectOptions, connect};
use crate::endpoint::{Endpoint, Host, HostPort};
use crate::error::{Error, Op, Result};
use crate::net::{self, within};
use crate::socket::Socket;
use crate::tls::Connector;

/// How long a TLS probe waits for the server's close_notify after its own.
const PEER_CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Makes the TLS handshake on `socket`, connected to `endpoint` (a `tls:` one, of `host`),
/// as `connector` says, then ends the session with close_notify: `connect -z`'s probe of a
/// TLS port, which succeeds only where a TLS server answers with a certificate `connector`
/// accepts, as `ncat --ssl -z` does — a port that takes the connection but speaks no TLS,
/// or one whose certificate fails verification, fails the probe. `timeout` bounds the
/// handshake, and then the close.
///
/// It blocks the calling thread, on a small tokio runtime of its own (from a thread of a
/// tokio runtime, on a thread of its own while the caller's waits: that thread runs nothing
/// else meanwhile, so on a `current_thread` runtime a server the same runtime runs cannot
/// answer the probe, which then times out; from async code, call it in
/// `tokio::task::spawn_blocking`).
///
/// # Errors
///
/// `cannot connect to ENDPOINT: REASON`: the handshake failed (in words: `certificate has
/// expired`, `the peer does not speak TLS`…) or timed out.
pub fn probe_tls(
    socket: Socket,
    connector: &Connector,
    host: &Host,
    endpoint: &Endpoint,
    timeout: Option<Duration>,
) -> Result<()> {
    super::tls_runtime::off_runtime(|| {
        let (runtime, tcp) = super::tls_runtime::own_runtime(socket)?;
        runtime.block_on(async {
            let tcp = tokio::net::TcpStream::from_std(tcp)
                .map_err(|err| Error::new(Op::Connect, endpoint, err))?;
            let mut tls =
                super::tls_runtime::client_handshake(connector, host, endpoint, timeout, tcp)
                    .await?;
            // The handshake is the probe: a close that fails after it does not undo it. The
            // server's own close_notify is waited for a moment, so that it does not meet a
            // closed socket (a reset, and `broken pipe` in its log).
            let wait = timeout.map_or(PEER_CLOSE_WAIT, |limit| limit.min(PEER_CLOSE_WAIT));
            let _ = within(Some(wait), async {
                tls.shutdown().await?;
                tokio::io::copy(&mut tls, &mut tokio::io::sink()).await
            })
            .await;
            Ok(())
        })
    })
}

/// How many ports are probed at once by default.
pub const DEFAULT_PARALLEL: usize = 32;

/// Connects to `endpoint`'s host (a `tcp:` endpoint; its port is not used) on every port of
/// `ports`, at most `parallel` at once (one when `options` fix the source port, which two
/// connections cannot share), each attempt bounded by `options.timeout`, and hands each
/// port's outcome to `found` in ascending port order as soon as the ports before it are
/// known: `Ok` when the connection was made (and closed at once), the connect's error when
/// not. When `found` returns `false` no more ports are probed (a reader of the results has
/// gone).
///
/// # Errors
///
/// The host does not resolve (or has no address of the family asked for); `endpoint` is not
/// `tcp:` (`InvalidInput`).
///
/// # Examples
///
/// ```
/// use socketkit::client::{ConnectOptions, probe::probe_ports};
/// use socketkit::socket::create_server;
/// let open = create_server(("127.0.0.1", 0), 5, false)?;
/// let port = open.local_addr()?.port().unwrap();
/// let host = "127.0.0.1:1".parse().unwrap();
/// let mut seen = Vec::new();
/// probe_ports(&host, port..=port, ConnectOptions::default(), 4, |port, outcome| {
///     seen.push((port, outcome.is_ok()));
///     true
/// })?;
/// assert_eq!(seen, [(port, true)]);
/// # Ok::<(), socketkit::Error>(())
/// ```
pub fn probe_ports(
    endpoint: &Endpoint,
    ports: RangeInclusive<u16>,
    options: ConnectOptions,
    parallel: usize,
    mut found: impl FnMut(u16, Result<()>) -> bool,
) -> Result<()> {
    let Endpoint::Tcp(host_port) = endpoint else {
        let err = io::Error::new(io::ErrorKind::InvalidInput, "ports are probed over TCP");
        return Err(crate::Error::new(crate::error::Op::Connect, endpoint, err));
    };
    // Resolved once: the same addresses for every port.
    let addresses: Vec<std::net::IpAddr> = net::candidates(endpoint, options.family)?
        .iter()
        .filter_map(|address| address.as_socket_addr().map(|addr| addr.ip()))
        .collect();
    let (first, last) = (u32::from(*ports.start()), u32::from(*ports.end()));
    if first > last {
        return Ok(());
    }
    let parallel = match options.source_port {
        Some(_) => 1,
        None => parallel.clamp(1, (last - first + 1) as usize),
    };
    let next = AtomicU32::new(first);
    let stop = AtomicBool::new(false);
    let (results, outcomes) = mpsc::channel();
    thread::scope(|scope| {
        for _ in 0..parallel {
            let (next, stop, results, addresses) = (&next, &stop, results.clone(), &addresses);
            scope.spawn(move || {
                loop {
                    let port = next.fetch_add(1, Ordering::Relaxed);
                    if port > last || stop.load(Ordering::Relaxed) {
                        return;
                    }
                    // At most `last`, a u16.
                    let port = port as u16;
                    let outcome = probe_one(&host_port.host, addresses, port, options);
                    if results.send((port, outcome)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(results);
        // Outcomes arrive as the probes end; they are handed on in port order.
        let mut waiting = BTreeMap::new();
        let mut due = first;
        'outcomes: for (port, outcome) in outcomes {
            waiting.insert(u32::from(port), outcome);
            while let Some(outcome) = waiting.remove(&due) {
                // `due` is at most `last`, a u16.
                if !found(due as u16, outcome) {
                    // The probes in flight end on their own; their results go nowhere.
                    stop.store(true, Ordering::Relaxed);
                    break 'outcomes;
                }
                due += 1;
            }
        }
    });
    Ok(())
}

/// One port: each address in turn until one takes the connection; the last error if none.
fn probe_one(
    host: &Host,
    addresses: &[std::net::IpAddr],
    port: u16,
    options: ConnectOptions,
) -> Result<()> {
    let mut last = None;
    for &ip in addresses {
        let endpoint = Endpoint::Tcp(HostPort {
            host: Host::Ip(ip),
            port,
        });
        match connect(&endpoint, options) {
            Ok(_) => return Ok(()),
            Err(err) => last = Some(err),
        }
    }
    Err(last.unwrap_or_else(|| {
        let endpoint = Endpoint::Tcp(HostPort {
            host: host.clone(),
            port,
        });
        crate::Error::new(
            crate::error::Op::Connect,
            endpoint,
            io::ErrorKind::NotFound.into(),
        )
    }))
}
