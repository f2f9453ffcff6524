//! The load generator behind `socketkit bench`, in the shape of quinn's `perf`: a fixed
//! number of concurrent workers (closed loop) or a fixed arrival rate (open loop, for latency
//! under a known load), bounded by duration, count and Ctrl-C, with a warm-up that is not
//! counted; statistics in [`stats`], the picture in [`plot`].
//!
//! # Modes
//! - `greeting`: each operation is a connection — connect, read to end, compare with
//!   `expect`, close. On a datagram endpoint: send one datagram, compare the answer.
//! - `echo`: each connection streams `size`-byte blocks with at most `window` bytes
//!   unanswered and checks every byte; each block's round trip is one operation. On a
//!   datagram endpoint: send `size` bytes, expect them back.
//! - `idle`: open `connections` connections, hold them for the duration, report how many the
//!   server still holds at the end and what holding them cost in memory ([`memory`]).
//!
//! The [`report`] of a run carries its configuration and time series, so that a saved one
//! (`--json`) can be read back and compared with another ([`compare`], [`plot`]).

pub mod compare;
mod fast;
pub mod memory;
mod mode;
pub mod plot;
pub mod report;
pub mod stats;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};

use crate::endpoint::Endpoint;
use crate::error::Result;
use mode::{Datagram, Target};
pub use report::{Report, Setup};
pub use stats::{Failure, Stats};

/// Extra payload bytes past one block, so that consecutive echo blocks differ.
const PAYLOAD_SLACK: usize = 251;

/// A one-way flag that tasks can wait on: set once, seen by every clone, before or after
/// they start waiting (unlike `Notify::notify_waiters`, nothing is missed).
#[derive(Debug, Clone)]
pub struct Signal {
    tx: Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
}

impl Default for Signal {
    fn default() -> Signal {
        let (tx, rx) = watch::channel(false);
        Signal {
            tx: Arc::new(tx),
            rx,
        }
    }
}

impl Signal {
    /// Sets the flag.
    pub fn set(&self) {
        self.tx.send_replace(true);
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        *self.rx.borrow()
    }

    /// Waits until the flag is set.
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        // An error means the sender is gone, which cannot happen while `self` holds it.
        let _ = rx.wait_for(|set| *set).await;
    }
}

/// What kind of load to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A connection per operation, read to end.
    Greeting,
    /// Verified blocks streamed through long-lived connections.
    Echo,
    /// Connections opened and held.
    Idle,
}

impl Mode {
    /// The mode's name, as `--mode` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Greeting => "greeting",
            Mode::Echo => "echo",
            Mode::Idle => "idle",
        }
    }
}

/// A load test's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// What kind of load.
    pub mode: Mode,
    /// Concurrent workers (greeting, echo) or connections to hold (idle).
    pub connections: usize,
    /// How long to measure, after the warm-up.
    pub duration: Duration,
    /// How long to run before counting.
    pub warmup: Duration,
    /// Open loop: start this many operations per second (at most `connections` at once)
    /// instead of keeping `connections` busy.
    pub rate: Option<f64>,
    /// Stop after this many completed operations.
    pub count: Option<u64>,
    /// Greeting: the bytes every answer must be.
    pub expect: Option<Vec<u8>>,
    /// Echo: block size in bytes.
    pub size: usize,
    /// Echo: bytes in flight per connection.
    pub window: usize,
    /// Give up on one operation after this long without finishing it.
    pub timeout: Duration,
    /// Timeline bucket width (for the report).
    pub interval: Duration,
    /// Threads generating load (closed-loop stream greeting runs one readiness loop each).
    pub threads: usize,
    /// `tls:` endpoints: how servers are verified (default: against the system's CA
    /// store). Every connection makes its handshake before its operation, and the handshake
    /// counts in its latency.
    pub tls: Option<crate::tls::Connector>,
    /// Idle: the server's process, whose memory is read before and while the connections
    /// are held.
    pub server_pid: Option<u32>,
    /// TCP targets: start every connection with a PROXY protocol header of this version,
    /// carrying the connection's real source and destination — in the same send as the
    /// first request bytes where the mode sends any (echo), else on its own right after
    /// connect (greeting, idle; before a `tls:` handshake).
    pub send_proxy: Option<crate::proxy_protocol::Version>,
    payload: Vec<u8>,
    echo: bool,
    /// `tls:` endpoints: the server's host, for the server name.
    tls_host: Option<crate::endpoint::Host>,
}

impl Config {
    /// A configuration with defaults: 64 connections, 5 s, 1 s warm-up, 4 KiB blocks.
    pub fn new(mode: Mode) -> Config {
        Config {
            mode,
            connections: 64,
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            rate: None,
            count: None,
            expect: None,
            size: 4096,
            window: 4096,
            timeout: Duration::from_secs(5),
            interval: Duration::from_millis(250),
            threads: 1,
            tls: None,
            server_pid: None,
            send_proxy: None,
            payload: Vec::new(),
            echo: false,
            tls_host: None,
        }
    }

    /// The configuration as the report records it (and the table's header shows it).
    pub fn setup(&self) -> Setup {
        let echo = self.mode == Mode::Echo;
        Setup {
            connections: self.connections,
            size: echo.then_some(self.size.max(1)),
            window: echo.then_some(self.window.max(self.size.max(1))),
            duration_s: self.duration.as_secs_f64(),
            // Idle runs open their connections once, with no warm-up (see `prepared`).
            warmup_s: match self.mode {
                Mode::Idle => 0.0,
                _ => self.warmup.as_secs_f64(),
            },
            rate: self.rate,
            count: self.count,
            threads: self.threads,
        }
    }

    /// The TLS client and server host of a `tls:` run.
    fn tls_target(&self) -> Option<(&crate::tls::Connector, &crate::endpoint::Host)> {
        self.tls.as_ref().zip(self.tls_host.as_ref())
    }

    fn prepared(mut self) -> Config {
        if self.mode == Mode::Idle {
            // Idle connections are opened once: there is nothing to warm up, and opening
            // them is what is counted.
            self.warmup = Duration::ZERO;
        }
        self.size = self.size.max(1);
        self.window = self.window.max(self.size);
        self.echo = self.mode == Mode::Echo;
        // Deterministic pseudo-random bytes (xorshift): a corrupted byte shows.
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        self.payload = (0..self.size + PAYLOAD_SLACK)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        self
    }
}

/// Descriptors a run needs besides its connections: the runtime's, the readiness loops'
/// epoll instances, stdio.
fn descriptor_headroom(config: &Config) -> u64 {
    64 + 2 * config.threads as u64
}

/// Makes room for the descriptors a run of `config` needs (one per connection, plus the
/// runtime's): raises the soft open-file limit towards the hard one if need be.
///
/// # Errors
///
/// When even the hard limit is too low (the run would spend itself on `EMFILE`): the most
/// connections the limit allows.
pub fn reserve_descriptors(config: &Config) -> std::result::Result<(), u64> {
    let headroom = descriptor_headroom(config);
    let wanted = config.connections as u64 + headroom;
    let limit = crate::net::raise_descriptor_limit(wanted);
    if limit >= wanted {
        Ok(())
    } else {
        Err(limit.saturating_sub(headroom))
    }
}

/// Runs a load test against `endpoint` and returns its report; `stop` ends it early (Ctrl-C),
/// after which in-flight operations get up to the operation timeout to finish.
///
/// # Errors
///
/// The endpoint cannot be resolved; a `tls:` endpoint without [`Config::tls`] and no system
/// CA store.
pub async fn run(
    endpoint: &Endpoint,
    mut config: Config,
    stats: Arc<Stats>,
    stop: Signal,
) -> Result<Report> {
    let target = Target::resolve(endpoint)?;
    match endpoint {
        Endpoint::Tls(hp) => {
            if config.tls.is_none() {
                let options = crate::tls::ClientOptions::default();
                config.tls = Some(crate::tls::Connector::new(crate::tls::client_config(
                    &options,
                )?));
            }
            config.tls_host = Some(hp.host.clone());
        }
        _ => config.tls = None,
    }
    let setup = config.setup();
    let config = Arc::new(config.prepared());
    stats.set_limit(config.count);
    let ending = Signal::default();
    let started = Instant::now();
    let driver = drive(
        target,
        Arc::clone(&config),
        Arc::clone(&stats),
        ending.clone(),
    );
    let timed = async {
        clock(&config, &stats, &stop).await;
        if config.mode != Mode::Idle {
            stats.stop_recording();
        }
        ending.set();
        // Let in-flight work end (bounded by the operation timeout), then count idle holders.
        tokio::time::sleep(config.timeout + Duration::from_secs(1)).await;
    };
    // The driver is polled here and nowhere else, so it is never polled again once done (a
    // future polled after completion panics: `async fn resumed after completion`). It ends
    // on its own only after `ending`: workers retry rather than give up.
    let held = tokio::select! {
        held = driver => held,
        () = timed => None,
    };
    stats.stop_recording();
    let measured = stats
        .measured()
        .unwrap_or_else(|| started.elapsed().saturating_sub(config.warmup));
    let mut report = stats.report(endpoint.to_string(), config.mode.name(), setup, measured);
    if let Some(held) = held {
        report.held = Some(held.count);
        report.memory = Some(held.memory);
    }
    Ok(report)
}

/// Waits out the warm-up (then starts recording) and the measured span, which ends at the
/// duration, at `stop`, or once `count` operations have completed.
async fn clock(config: &Config, stats: &Stats, stop: &Signal) {
    if !config.warmup.is_zero() {
        tokio::select! {
            () = tokio::time::sleep(config.warmup) => {}
            () = stop.wait() => return,
        }
    }
    stats.start_recording();
    let deadline = tokio::time::sleep(config.duration);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => return,
            () = stop.wait() => return,
            () = tokio::time::sleep(Duration::from_millis(20)) => {
                if config.count.is_some_and(|count| stats.completed() >= count) {
                    return;
                }
            }
        }
    }
}

/// Runs the workers until `ending`; for idle mode returns what was held.
async fn drive(
    target: Target,
    config: Arc<Config>,
    stats: Arc<Stats>,
    ending: Signal,
) -> Option<Held> {
    match (config.mode, config.rate) {
        (Mode::Idle, _) => Some(hold(&target, &config, &stats, &ending).await),
        (Mode::Echo, _) if !target.is_datagram() => {
            let workers = spawn_all(config.connections, &ending, || {
                let (target, config, stats, ending) = (
                    target.clone(),
                    Arc::clone(&config),
                    Arc::clone(&stats),
                    ending.clone(),
                );
                async move { mode::echo(&target, config, stats, ending).await }
            });
            join_all(workers.await).await;
            None
        }
        (_, Some(rate)) => {
            open_loop(target, config, stats, ending, rate).await;
            None
        }
        // The readiness loops read raw sockets: a TLS run goes through the tasks.
        (Mode::Greeting, None) if !target.is_datagram() && config.tls.is_none() => {
            readiness_loops(target, config, stats, ending).await;
            None
        }
        (_, None) => {
            closed_loop(target, config, stats, ending).await;
            None
        }
    }
}

/// How many tasks are spawned between two looks at the clock.
const SPAWN_BATCH: usize = 256;

/// Spawns `count` tasks made by `make`, in batches, yielding in between so that the clock
/// keeps time on a one-thread runtime; stops spawning at `ending` (a million workers take
/// seconds to start).
async fn spawn_all<F, Fut>(
    count: usize,
    ending: &Signal,
    mut make: F,
) -> Vec<tokio::task::JoinHandle<Fut::Output>>
where
    F: FnMut() -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    let mut handles = Vec::with_capacity(count.min(SPAWN_BATCH * 64));
    for i in 0..count {
        if i % SPAWN_BATCH == 0 {
            tokio::task::yield_now().await;
            if ending.is_set() {
                break;
            }
        }
        handles.push(tokio::spawn(make()));
    }
    handles
}

/// Waits for every task (a task that panicked is already reported by tokio).
async fn join_all<T>(handles: Vec<tokio::task::JoinHandle<T>>) {
    for handle in handles {
        let _ = handle.await;
    }
}

/// How long a worker whose connection or socket could not be set up waits before it tries
/// again: retried, not given up, so that the failures are counted in the measured span and a
/// server that comes back is used; paused, so that a refused port is not a busy loop.
pub(crate) const RETRY_PAUSE: Duration = Duration::from_millis(10);

/// Waits [`RETRY_PAUSE`], or less if the run ends.
pub(crate) async fn pause(ending: &Signal) {
    tokio::select! {
        () = tokio::time::sleep(RETRY_PAUSE) => {}
        () = ending.wait() => {}
    }
}

/// Closed-loop greeting over TCP or Unix on bare readiness loops ([`fast`]), one thread per
/// `threads`, the connections split between them.
async fn readiness_loops(target: Target, config: Arc<Config>, stats: Arc<Stats>, ending: Signal) {
    let threads = config.threads.clamp(1, config.connections.max(1));
    let loops: Vec<_> = (0..threads)
        .map(|i| {
            let share =
                config.connections / threads + usize::from(i < config.connections % threads);
            let (target, config, stats, ending) = (
                target.clone(),
                Arc::clone(&config),
                Arc::clone(&stats),
                ending.clone(),
            );
            tokio::task::spawn_blocking(move || {
                if let Err(err) = fast::greeting_loop(&target, &config, share, &stats, &ending) {
                    tracing::warn!("load loop failed: {}", crate::error::describe(&err));
                }
            })
        })
        .collect();
    join_all(loops).await;
}

/// `connections` workers, each starting its next operation when the last one ends.
async fn closed_loop(target: Target, config: Arc<Config>, stats: Arc<Stats>, ending: Signal) {
    let workers = spawn_all(config.connections, &ending, || {
        let (target, config, stats, done) = (
            target.clone(),
            Arc::clone(&config),
            Arc::clone(&stats),
            ending.clone(),
        );
        async move {
            let mut socket = None;
            let mut buf = Vec::new();
            while !done.is_set() {
                if target.is_datagram() && socket.is_none() {
                    match Datagram::open(&target).await {
                        Ok(opened) => socket = Some(opened),
                        Err(err) => {
                            stats.fail_io(&err);
                            pause(&done).await;
                            continue;
                        }
                    }
                }
                one(&target, socket.as_ref(), &mut buf, &config, &stats).await;
            }
        }
    });
    join_all(workers.await).await;
}

/// Operations started at a fixed rate, at most `connections` in flight; an arrival that finds
/// every slot busy waits for one (and the latency it then sees includes the wait).
async fn open_loop(
    target: Target,
    config: Arc<Config>,
    stats: Arc<Stats>,
    ending: Signal,
    rate: f64,
) {
    let slots = Arc::new(Semaphore::new(
        config.connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    let mut ticker = tokio::time::interval(period(rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let sockets = Arc::new(datagram_sockets(&target, &config, &stats, &ending).await);
    let mut next = 0usize;
    loop {
        tokio::select! {
            () = ending.wait() => break,
            _ = ticker.tick() => {}
        }
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            break;
        };
        let (target, config, stats, sockets) = (
            target.clone(),
            Arc::clone(&config),
            Arc::clone(&stats),
            Arc::clone(&sockets),
        );
        let index = next;
        next = next.wrapping_add(1);
        tokio::spawn(async move {
            let socket = (!sockets.is_empty()).then(|| &sockets[index % sockets.len()]);
            one(&target, socket, &mut Vec::new(), &config, &stats).await;
            drop(permit);
        });
    }
    // Wait for what is in flight.
    let _ = slots
        .acquire_many(u32::try_from(config.connections.max(1)).unwrap_or(u32::MAX))
        .await;
}

/// The time between two arrivals at `rate` per second: never zero, which `interval` refuses
/// (a rate past a billion a second, or not a number, is as fast as the timer goes).
fn period(rate: f64) -> Duration {
    Duration::try_from_secs_f64(1.0 / rate.max(0.001))
        .unwrap_or(Duration::ZERO)
        .max(Duration::from_nanos(1))
}

/// For a datagram target, the open loop's sockets (one per connection, until `ending`);
/// none for a stream target.
async fn datagram_sockets(
    target: &Target,
    config: &Config,
    stats: &Stats,
    ending: &Signal,
) -> Vec<Datagram> {
    let mut all = Vec::new();
    if !target.is_datagram() {
        return all;
    }
    for _ in 0..config.connections {
        if ending.is_set() {
            break;
        }
        match Datagram::open(target).await {
            Ok(socket) => all.push(socket),
            Err(err) => stats.fail_io(&err),
        }
    }
    all
}

/// One operation: a request/reply on `socket` (into `buf`) when there is one, else a greeting
/// connection.
async fn one(
    target: &Target,
    socket: Option<&Datagram>,
    buf: &mut Vec<u8>,
    config: &Config,
    stats: &Stats,
) {
    match socket {
        Some(socket) => mode::request(socket, buf, config, stats).await,
        None => mode::greeting(target, config, stats).await,
    }
}

/// What an idle run held at its end.
struct Held {
    /// Connections the server still held.
    count: u64,
    /// What they cost.
    memory: memory::HeldMemory,
}

/// Opens `connections` connections (at most 64 connecting at once) and holds them until
/// `ending`; returns how many the server still held then, and the memory they took.
async fn hold(target: &Target, config: &Arc<Config>, stats: &Arc<Stats>, ending: &Signal) -> Held {
    // Before any connection exists: the growth from here is what holding them costs.
    let bench_before = memory::Baseline::take(None);
    let server_before = config
        .server_pid
        .and_then(|pid| memory::Baseline::take(Some(pid)));
    let connecting = Arc::new(Semaphore::new(64));
    let held = Arc::new(std::sync::Mutex::new(Vec::new()));
    let opens = spawn_all(config.connections, ending, || {
        let (target, config, stats, connecting, held, ending) = (
            target.clone(),
            Arc::clone(config),
            Arc::clone(stats),
            Arc::clone(&connecting),
            Arc::clone(&held),
            ending.clone(),
        );
        async move {
            let Ok(_permit) = connecting.acquire_owned().await else {
                return;
            };
            if ending.is_set() {
                return;
            }
            if let Some(stream) = mode::idle(&target, &config, &stats).await {
                held.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(stream);
            }
        }
    })
    .await;
    ending.wait().await;
    // Connections still being opened now are not counted; their tasks end with the run.
    drop(opens);
    let held = held
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let count = held
        .iter()
        .filter(|stream| mode::still_open(stream))
        .count() as u64;
    // Read while the connections are still open, at the end of the run: by then the server
    // has accepted them (a connect completes before the server's accept does).
    // The bench's figure is per connection it opened, the server's per one it still held.
    let opened = held.len() as u64;
    let memory = memory::HeldMemory {
        bench: bench_before.and_then(|before| before.growth(opened)),
        server: server_before.and_then(|before| before.growth(count)),
        server_pid: config.server_pid,
    };
    Held { count, memory }
}
