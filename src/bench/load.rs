//! A run of the load generator: [`run`] prepares the configuration, keeps the clock
//! (warm-up, measured span, `stop`) and drives the workers — closed loop, open loop at a
//! fixed rate (paced by [`period`]), bare readiness loops, or idle connections held
//! ([`hold`]) — then turns the statistics into the report.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, TryAcquireError};

use super::config::{Config, Mode};
use super::fast;
use super::memory;
use super::mode::{self, Datagram, Target};
use super::report::Report;
use super::signal::{Signal, pause};
use super::stats::Stats;
use crate::endpoint::Endpoint;
use crate::error::Result;

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
    tokio::select! {
        () = tokio::time::sleep(config.duration) => {}
        () = stop.wait() => {}
        () = stats.limit_reached() => {}
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
            while !done.is_set() && !stats.limit_reached_now() {
                if target.is_datagram() && socket.is_none() {
                    match mode::open_datagram(&target) {
                        Ok(opened) => socket = Some(opened),
                        Err(err) => {
                            stats.fail_io(&err);
                            pause(&done).await;
                            continue;
                        }
                    }
                }
                let started = Instant::now();
                if !one(&target, socket.as_ref(), &mut buf, &config, &stats, started).await {
                    // A fresh socket for the next request: an answer still on its way to
                    // this one (it timed out) would be taken as the next request's, every
                    // request sending the same bytes.
                    socket = None;
                    pause(&done).await;
                }
            }
        }
    });
    join_all(workers.await).await;
}

/// Operations started at a fixed rate, at most `connections` in flight; an arrival that finds
/// every slot busy waits for one, and its latency counts from the moment it fell due, so
/// that the wait is in it (a server too slow for the rate shows as the queue it makes, not
/// as its service time alone: what wrk2 calls coordinated omission). Arrivals that fell due
/// in the measured span and had not started by its end are reported as not started.
///
/// A failed operation is counted once (it is not retried: the next one is the next arrival)
/// and keeps its slot through the retry pause, so that a refused port is not a busy loop at
/// `-c` times the speed of a refusal. Arrivals that fall due while the slots are held that
/// way are dropped, not made up in a burst once they free.
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
    let sockets = Arc::new(DatagramPool(std::sync::Mutex::new(
        datagram_sockets(&target, &config, &stats, &ending).await,
    )));
    // Set by an operation that failed and holds its slot through the pause; cleared at
    // every arrival.
    let paused = Arc::new(AtomicBool::new(false));
    loop {
        let due = tokio::select! {
            () = ending.wait() => break,
            due = ticker.tick() => due.into_std(),
        };
        if stats.limit_reached_now() {
            break;
        }
        let permit = match Arc::clone(&slots).try_acquire_owned() {
            Ok(permit) => {
                paused.store(false, Ordering::Relaxed);
                permit
            }
            Err(TryAcquireError::Closed) => break,
            Err(TryAcquireError::NoPermits) => {
                let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
                    break;
                };
                if paused.swap(false, Ordering::Relaxed) {
                    // The wait was (at least partly) failures pausing: the arrivals missed
                    // meanwhile are dropped rather than sent in a burst now.
                    ticker.reset();
                }
                permit
            }
        };
        if ending.is_set() {
            break;
        }
        stats.arrival_started(due);
        let (target, config, stats, sockets, paused, ending) = (
            target.clone(),
            Arc::clone(&config),
            Arc::clone(&stats),
            Arc::clone(&sockets),
            Arc::clone(&paused),
            ending.clone(),
        );
        tokio::spawn(async move {
            // A socket of its own while the operation lasts: two requests in flight on one
            // socket would take each other's answers.
            let socket = match target.is_datagram() {
                true => match sockets.take(&target) {
                    Ok(socket) => Some(socket),
                    Err(err) => {
                        stats.fail_io(&err);
                        paused.store(true, Ordering::Relaxed);
                        pause(&ending).await;
                        drop(permit);
                        return;
                    }
                },
                false => None,
            };
            if one(
                &target,
                socket.as_ref(),
                &mut Vec::new(),
                &config,
                &stats,
                due,
            )
            .await
            {
                sockets.give_back(socket);
            } else {
                // Not given back: an answer still on its way to it would be taken as the
                // next request's (see `closed_loop`).
                paused.store(true, Ordering::Relaxed);
                pause(&ending).await;
            }
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

/// The open loop's datagram sockets not in use: an operation takes one for its request and
/// its answer, and gives it back only if it succeeded.
struct DatagramPool(std::sync::Mutex<Vec<Datagram>>);

impl DatagramPool {
    /// A socket no operation is using, or a new one when none is left (after failures).
    fn take(&self, target: &Target) -> std::io::Result<Datagram> {
        let spare = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        spare.map_or_else(|| mode::open_datagram(target), Ok)
    }

    /// Puts `socket` back for the next operation.
    fn give_back(&self, socket: Option<Datagram>) {
        if let Some(socket) = socket {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(socket);
        }
    }
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
        match mode::open_datagram(target) {
            Ok(socket) => all.push(socket),
            Err(err) => stats.fail_io(&err),
        }
    }
    all
}

/// One operation: a request/reply on `socket` (into `buf`) when there is one, else a greeting
/// connection, its latency counted from `started`. Returns whether it succeeded (a failure
/// is already counted).
async fn one(
    target: &Target,
    socket: Option<&Datagram>,
    buf: &mut Vec<u8>,
    config: &Config,
    stats: &Stats,
    started: Instant,
) -> bool {
    match socket {
        Some(socket) => mode::request(socket, buf, config, stats, started).await,
        None => mode::greeting(target, config, stats, started).await,
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
