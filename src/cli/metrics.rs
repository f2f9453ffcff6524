//! `--metrics HOST:PORT` (SPEC §3.5): the endpoint checked with the other options, bound
//! with the listeners (or, on a SIGUSR2 restart, taken over from the old process), announced
//! after their `listening on` lines, then served beside them.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use socketkit::endpoint::Endpoint;
use socketkit::metrics::{HttpListener, Metrics};

use super::args::MetricsArgs;
use super::exit::CliError;
use super::resolve;

/// The metrics of a command and where to serve them.
#[derive(Debug)]
pub(crate) struct MetricsPlan {
    endpoint: Endpoint,
    metrics: Arc<Metrics>,
}

impl MetricsPlan {
    /// The plan of `--metrics`, checked (exit 2 when the endpoint is not `HOST:PORT`), or
    /// `None` without the option.
    pub(crate) fn from_args(args: &MetricsArgs) -> Result<Option<MetricsPlan>, CliError> {
        let Some(text) = &args.metrics else {
            return Ok(None);
        };
        let endpoint = resolve::endpoint(text)?;
        if !matches!(endpoint, Endpoint::Tcp(_)) {
            return Err(CliError::Usage(format!(
                "--metrics takes HOST:PORT (HTTP over TCP), not {endpoint}"
            )));
        }
        Ok(Some(MetricsPlan {
            endpoint,
            metrics: Metrics::new(),
        }))
    }

    /// The metrics to count into.
    pub(crate) fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// Binds the endpoint, or takes the socket the old process handed over (inside the
    /// runtime); serve it with [`Bound::serve`] or [`Bound::stoppable`] once the readiness lines
    /// are out. Bound anew, a port another process holds is an error.
    pub(crate) fn bind(&self, source: MetricsSocket) -> Result<Bound, CliError> {
        // Named as the metrics endpoint: `cannot listen on tcp:…:9100` alone reads as the
        // service's own listener.
        let named = |err: socketkit::Error| {
            let target = format!("{} (--metrics)", self.endpoint);
            CliError::runtime(err.op(), &target, err.into_io_error())
        };
        let http = match source {
            MetricsSocket::Bind => HttpListener::bind(&self.endpoint).map_err(named)?,
            MetricsSocket::HandedOver(fd) => HttpListener::adopt(fd)?,
            MetricsSocket::BesidePredecessor => {
                HttpListener::bind_beside_predecessor(&self.endpoint).map_err(named)?
            }
        };
        Ok(Bound {
            http,
            metrics: self.metrics(),
        })
    }

    /// For a command that runs no tokio runtime (`listen`): binds the endpoint on a small
    /// runtime of its own; [`Standalone::start`] serves it from a thread.
    pub(crate) fn bind_standalone(&self) -> Result<Standalone, CliError> {
        super::signals::runtime_can_start()
            .map_err(|err| CliError::runtime(socketkit::error::Op::Create, "tokio runtime", err))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|err| CliError::runtime(socketkit::error::Op::Create, "tokio runtime", err))?;
        let bound = {
            let _entered = runtime.enter();
            self.bind(MetricsSocket::Bind)?
        };
        Ok(Standalone { runtime, bound })
    }
}

/// Where the metrics endpoint's socket comes from.
#[derive(Debug)]
pub(crate) enum MetricsSocket {
    /// Bound anew: a process that replaces none.
    Bind,
    /// The socket the process this one replaces (SIGUSR2) handed over.
    HandedOver(OwnedFd),
    /// Bound with `SO_REUSEPORT` beside the socket of the process this one replaces, which
    /// handed over none: a socketkit older than the handing over of the metrics socket.
    BesidePredecessor,
}

/// The metrics endpoint of a command without a runtime, bound on a runtime of its own.
#[derive(Debug)]
pub(crate) struct Standalone {
    runtime: tokio::runtime::Runtime,
    bound: Bound,
}

impl Standalone {
    /// Announces the endpoint (after the `listening on` lines) and serves it from a thread
    /// that lives as long as the process.
    pub(crate) fn start(self) {
        self.bound.announce();
        let Standalone { runtime, bound } = self;
        // Without a thread (a thread limit), no metrics: the service is what matters.
        if let Err(err) = std::thread::Builder::new()
            .name("socketkit-metrics".into())
            .spawn(move || runtime.block_on(bound.serve()))
        {
            tracing::warn!("cannot start the metrics endpoint's thread: {err}");
        }
    }
}

/// The metrics endpoint, bound.
#[derive(Debug)]
pub(crate) struct Bound {
    http: HttpListener,
    metrics: Arc<Metrics>,
}

impl Bound {
    /// Writes `metrics on http://HOST:PORT/metrics` (the real port) to stderr: after the
    /// `listening on` lines.
    pub(crate) fn announce(&self) {
        if let Endpoint::Tcp(at) = self.http.local_endpoint() {
            super::ready::write_whole(&format!("metrics on http://{at}/metrics\n"));
        }
    }

    /// Serves the endpoint until the runtime ends.
    pub(crate) async fn serve(self) {
        self.http.serve(self.metrics).await;
    }

    /// A duplicate of the listening socket, for a restart to hand over.
    pub(crate) fn handover_socket(&self) -> Result<OwnedFd, CliError> {
        Ok(self.http.handover_socket()?)
    }

    /// The endpoint, to [`Stoppable::start`] once the readiness lines are out, and the
    /// handle that stops its serving.
    pub(crate) fn stoppable(self) -> (Stoppable, StopServing) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (Stoppable { bound: self, rx }, StopServing(tx))
    }
}

/// The metrics endpoint, bound, served until its [`StopServing`] says stop.
#[derive(Debug)]
pub(crate) struct Stoppable {
    bound: Bound,
    rx: tokio::sync::watch::Receiver<bool>,
}

impl Stoppable {
    /// Announces the endpoint and serves it from a task until the runtime ends or
    /// [`StopServing::stop`].
    pub(crate) fn start(self) {
        let Stoppable { bound, mut rx } = self;
        bound.announce();
        let stop = async move {
            // An error is the handle dropped unused: nothing stops the serving then.
            if rx.wait_for(|stop| *stop).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::spawn(bound.http.serve_until(bound.metrics, stop));
    }
}

/// Stops the serving of a [`Bound::stoppable`]: a restart's old process, once the new one (which
/// inherited the socket) serves.
#[derive(Debug)]
pub(crate) struct StopServing(tokio::sync::watch::Sender<bool>);

impl StopServing {
    /// Stops accepting and returns once no scrape can reach this process any more: those
    /// queued on the socket are the new process's. Requests already accepted are answered.
    pub(crate) async fn stop(self) {
        // No receiver: the serving already ended.
        let _ = self.0.send(true);
        // The receiver goes with the serving future, once it has returned.
        self.0.closed().await;
    }
}
