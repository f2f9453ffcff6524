//! `socketkit listen`: a netcat listener on standard input and output.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use socketkit::client::{self, BridgeEnd, BridgeOptions, ByteCounts, Handshake, Input};
use socketkit::metrics::ListenerMetrics;
use socketkit::socket::Socket;

use super::access;
use super::args::ListenArgs;
use super::exit::CliError;
use super::metrics::MetricsPlan;
use super::tls::ServerSetup;
use super::{init_logging, ready, resolve, stdio, tls};

pub(crate) fn run(args: ListenArgs) -> Result<(), CliError> {
    let endpoint = resolve::endpoint(&args.endpoint)?;
    let datagrams = !endpoint.transport().is_stream();
    if datagrams && args.keep_open {
        return Err(CliError::Usage(
            "-k applies to stream endpoints only".into(),
        ));
    }
    let tls = tls::server(&args.tls, &args.tls_alpn, std::slice::from_ref(&endpoint))?;
    tls::check_alpn_applies(&args.tls_alpn, tls.is_some())?;
    let metrics = MetricsPlan::from_args(&args.metrics)?;
    if datagrams && metrics.is_some() {
        return Err(CliError::Usage(
            "--metrics applies to stream endpoints only".into(),
        ));
    }
    let options = stdio::options(&args.bridge);
    let access = access::resolve(&args.access)?;
    init_logging(&args.log);
    let mut listening = client::listen(&endpoint)?;
    let serving = metrics
        .as_ref()
        .map(MetricsPlan::bind_standalone)
        .transpose()?;
    access.drop_privileges()?;
    ready::announce(std::slice::from_ref(listening.local_endpoint()), "listen");
    let counters = metrics.map(|plan| {
        let name = listening.local_endpoint().to_string();
        plan.metrics().listener(&name)
    });
    if let Some(serving) = serving {
        serving.start();
    }
    if let Some(tls) = &tls {
        tls.announce();
    }
    let input = stdio::input(datagrams)?;
    if datagrams {
        let (first, peer) = listening.first_datagram_from(|peer| match access.check(peer) {
            Ok(_) => true,
            Err(reason) => {
                tracing::debug!(%peer, reason = reason.as_str(), "dropped a datagram");
                false
            }
        })?;
        tracing::debug!("datagram from {peer}");
        if stdio::output()?.write_all(&first).is_err() {
            return Ok(()); // stdout is gone: nothing more is wanted
        }
        let options = BridgeOptions {
            peer: Some(peer),
            ..options
        };
        stdio::run(listening.socket_mut(), true, &input, options)?;
        return Ok(());
    }
    loop {
        let (socket, peer) = listening.accept()?;
        if let Some(counters) = &counters {
            counters.accepted.inc();
        }
        let _place = match access.check(&peer) {
            Ok(place) => place,
            Err(reason) => {
                if let Some(counters) = &counters {
                    counters.refused(reason);
                }
                tracing::debug!(%peer, reason = reason.as_str(), "refused");
                // A reset: the client is told at once and we keep no TIME_WAIT.
                let _ = socket.set_linger(Some(std::time::Duration::ZERO));
                continue;
            }
        };
        tracing::debug!("connection from {peer}");
        let metered = counters.as_ref().map(Metered::start);
        let options = BridgeOptions {
            peer: Some(peer),
            counts: metered.as_ref().map(|m| Arc::clone(&m.counts)),
            ..options.clone()
        };
        if !args.keep_open {
            // Close the listener before bridging, so a second client is refused rather
            // than left waiting in the backlog.
            drop(listening);
            bridge(socket, tls.as_ref(), &input, options)?;
            return Ok(());
        }
        let end = bridge(socket, tls.as_ref(), &input, options);
        drop(metered);
        match end {
            Ok(BridgeEnd::OutputClosed) => return Ok(()),
            Ok(BridgeEnd::PeerClosed) => {}
            Err(err) => tracing::warn!("{err}"),
        }
    }
}

/// Bridges one accepted stream, through a TLS handshake on a `tls:` listener.
fn bridge(
    mut socket: Socket,
    tls: Option<&ServerSetup>,
    input: &Input,
    options: BridgeOptions,
) -> Result<BridgeEnd, CliError> {
    match tls {
        Some(tls) => {
            let handshake = Handshake::Server {
                config: std::sync::Arc::clone(&tls.tls.config),
                timeout: tls.handshake_timeout,
            };
            stdio::run_tls(socket, handshake, input, options)
        }
        None => stdio::run(&mut socket, false, input, options),
    }
}

/// One connection's share of the listener's metrics: counted as open now; its bytes (which
/// the bridge counts as they move) and its duration when it drops.
struct Metered<'a> {
    listener: &'a ListenerMetrics,
    counts: Arc<ByteCounts>,
    started: Instant,
}

impl<'a> Metered<'a> {
    fn start(listener: &'a ListenerMetrics) -> Metered<'a> {
        listener.active.inc();
        Metered {
            listener,
            counts: Arc::new(ByteCounts::default()),
            started: Instant::now(),
        }
    }
}

impl Drop for Metered<'_> {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.listener
            .received
            .inc_by(self.counts.received.load(Relaxed));
        self.listener.sent.inc_by(self.counts.sent.load(Relaxed));
        self.listener.closed(self.started.elapsed());
    }
}
