//! `--metrics HOST:PORT` (SPEC §3.5): the endpoint checked with the other options, bound
//! with the listeners, announced after their `listening on` lines, then served beside them.

use std::io::Write;
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

    /// Binds the endpoint (inside the runtime); serve it with [`Bound::serve`] once the
    /// readiness lines are out. A `restart` (SIGUSR2's new process) binds beside the old
    /// process's endpoint; otherwise a port another process holds is an error.
    pub(crate) fn bind(&self, restart: bool) -> Result<Bound, CliError> {
        let http = if restart {
            HttpListener::bind_beside_predecessor(&self.endpoint)?
        } else {
            HttpListener::bind(&self.endpoint)?
        };
        Ok(Bound {
            http,
            metrics: self.metrics(),
        })
    }

    /// For a command that runs no tokio runtime (`listen`): binds the endpoint on a small
    /// runtime of its own; [`Standalone::start`] serves it from a thread.
    pub(crate) fn bind_standalone(&self) -> Result<Standalone, CliError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|err| CliError::runtime(socketkit::error::Op::Create, "tokio runtime", err))?;
        let bound = {
            let _entered = runtime.enter();
            self.bind(false)?
        };
        Ok(Standalone { runtime, bound })
    }
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
        std::thread::spawn(move || runtime.block_on(bound.serve()));
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
            // stderr is unbuffered; if it is gone there is no one to tell.
            let _ = writeln!(std::io::stderr(), "metrics on http://{at}/metrics");
        }
    }

    /// Serves the endpoint until the runtime ends.
    pub(crate) async fn serve(self) {
        self.http.serve(self.metrics).await;
    }
}
