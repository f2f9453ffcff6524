//! Where an immediate reply's connections land when a TCP endpoint has one `SO_REUSEPORT`
//! listener per worker: all on the first listener while the workers keep up, spread by the
//! kernel's hash once one of them is busy. Both engines steer: the io_uring workers and the
//! epoll engine's accept loops.
//!
//! Each worker that takes connections sleeps and is woken on its own, and on a virtual
//! machine a wake-up costs about what a greeting does; spread over two workers at a load one
//! of them carries, the same connections cost ~1.45× the CPU of one worker's on the ring and
//! ~1.2× on the epoll engine (measured: docs/benchmarks.md, 2026-12-04). A reply's
//! connection lives for one send, so moving where new connections land moves the load at
//! once; echo, discard and every handler that keeps a connection keep the hash, for a
//! long-lived connection on the ring could not move off a worker that becomes busy.
//!
//! The steering is a classic BPF program on the listeners' reuseport group that picks the
//! group's first socket (`ret #0`); spreading detaches it (before Linux 5.3, which cannot,
//! it is replaced by one that leaves the choice to the kernel's hash). Every worker keeps
//! accepting either way, so whichever socket the kernel counts first, a worker takes its
//! connections. Load is measured over short windows ([`LoadWatch`]): a ring worker, one
//! thread, measures its own share of a core; the epoll engine's accept loops are tokio tasks
//! that move between the runtime's threads, so they measure the whole process's share,
//! which stands for every loop's. One at [`SPREAD_AT`] spreads, and the shares summed under
//! [`GATHER_BELOW`] gather again.

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::net::{process_cpu_time, steer_reuseport_to_first, thread_cpu_time, unsteer_reuseport};

/// How long a worker measures its load over.
const WINDOW: Duration = Duration::from_millis(20);
/// A worker's share of a core, in percent, at which connections spread over every worker.
const SPREAD_AT: u32 = 70;
/// The workers' shares summed, in percent of one core, under which connections gather on
/// the first listener again: well under [`SPREAD_AT`], so that the gathered load does not
/// spread again at once.
const GATHER_BELOW: u32 = 35;

/// The steering of one endpoint's reuseport group, shared by its workers.
pub(crate) struct Steering {
    spread: AtomicBool,
    /// Each worker's last measured share of a core, in percent.
    busy: Vec<AtomicU32>,
    next_index: AtomicUsize,
}

impl Steering {
    /// Steers the group of `first` (one of `count` listeners) to its first socket, if
    /// `count` listeners share it; `None` leaves the kernel's hash alone.
    ///
    /// # Errors
    ///
    /// The kernel refused the program (before Linux 4.5, or a filter): the hash stays, and
    /// the caller says so when it may log (after the readiness lines).
    pub(crate) fn attach(first: BorrowedFd<'_>, count: usize) -> io::Result<Option<Arc<Steering>>> {
        if count < 2 {
            return Ok(None);
        }
        steer_reuseport_to_first(first)?;
        Ok(Some(Arc::new(Steering {
            spread: AtomicBool::new(false),
            busy: (0..count).map(|_| AtomicU32::new(0)).collect(),
            next_index: AtomicUsize::new(0),
        })))
    }

    /// The load watch of one more worker that is a thread of its own: it measures the
    /// calling thread, on which it must be made and used.
    pub(crate) fn watch_thread(self: &Arc<Steering>) -> LoadWatch {
        let index = self.next_index.fetch_add(1, Ordering::Relaxed) % self.busy.len();
        LoadWatch::new(self, index, CpuClock::Thread)
    }

    /// The load watch of one more worker that is a task on a runtime's threads: it
    /// measures the whole process, whose share every such watch records as the first
    /// worker's (the others stay at zero), so that the sum is the process's share.
    pub(crate) fn watch_process(self: &Arc<Steering>) -> LoadWatch {
        LoadWatch::new(self, 0, CpuClock::Process)
    }

    /// Whether connections are spread over every listener now.
    fn is_spread(&self) -> bool {
        self.spread.load(Ordering::Relaxed)
    }

    /// Records worker `index`'s share of a core and steers the group (through `listener`,
    /// any of its sockets) if the load says so.
    fn record(&self, index: usize, busy: u32, listener: BorrowedFd<'_>) {
        self.busy[index].store(busy, Ordering::Relaxed);
        match decide(self.is_spread(), busy, self.total()) {
            Some(true) if self.flip(true) => match unsteer_reuseport(listener) {
                Ok(()) => tracing::debug!(
                    "a worker at {busy}% of a core: new connections spread over every listener"
                ),
                // Connections still land on the first listener, whose worker accepts.
                Err(err) => tracing::warn!("cannot spread connections over the workers: {err}"),
            },
            Some(false) if self.flip(false) => match steer_reuseport_to_first(listener) {
                Ok(()) => tracing::debug!(
                    "the workers at {}% of a core: new connections go to the first listener",
                    self.total()
                ),
                Err(err) => tracing::debug!("cannot gather connections on one worker: {err}"),
            },
            _ => {}
        }
    }

    fn total(&self) -> u32 {
        self.busy.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// Sets the state to `spread` if another worker did not just do so.
    fn flip(&self, spread: bool) -> bool {
        self.spread
            .compare_exchange(!spread, spread, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }
}

/// What the steering should become, given whether it is spread now, one worker's share of
/// a core and the workers' shares summed (percent): `None` to leave it.
fn decide(spread: bool, busy: u32, total: u32) -> Option<bool> {
    match spread {
        false if busy >= SPREAD_AT => Some(true),
        true if total < GATHER_BELOW => Some(false),
        _ => None,
    }
}

/// The CPU time a [`LoadWatch`] reads.
#[derive(Debug, Clone, Copy)]
enum CpuClock {
    /// The calling thread's.
    Thread,
    /// Every thread's of the process.
    Process,
}

impl CpuClock {
    fn read(self) -> Duration {
        match self {
            CpuClock::Thread => thread_cpu_time(),
            CpuClock::Process => process_cpu_time(),
        }
    }
}

/// One worker's measure of its load.
pub(crate) struct LoadWatch {
    steering: Arc<Steering>,
    index: usize,
    clock: CpuClock,
    window_start: Instant,
    cpu_at_start: Duration,
}

impl LoadWatch {
    fn new(steering: &Arc<Steering>, index: usize, clock: CpuClock) -> LoadWatch {
        LoadWatch {
            steering: Arc::clone(steering),
            index,
            clock,
            window_start: Instant::now(),
            cpu_at_start: clock.read(),
        }
    }

    /// Called once per loop turn: at the end of each window, records the share of a core
    /// the worker's thread (or the process) used in it.
    pub(crate) fn turn(&mut self, listener: BorrowedFd<'_>) {
        let now = Instant::now();
        let wall = now.duration_since(self.window_start);
        if wall < WINDOW {
            return;
        }
        let cpu = self.clock.read();
        let used = cpu.saturating_sub(self.cpu_at_start);
        self.window_start = now;
        self.cpu_at_start = cpu;
        let busy = (used.as_secs_f64() / wall.as_secs_f64() * 100.0).round() as u32;
        self.steering.record(self.index, busy, listener);
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_os = "linux", not(socketkit_sys_fallback)))]
    use std::os::fd::AsFd;

    use super::*;
    #[cfg(all(target_os = "linux", not(socketkit_sys_fallback)))]
    use crate::sys::reuseport_tests::{land, reuseport_pair};

    #[test]
    fn a_busy_worker_spreads_and_a_light_load_gathers() {
        assert_eq!(decide(false, SPREAD_AT, SPREAD_AT), Some(true));
        assert_eq!(decide(false, SPREAD_AT - 1, 150), None);
        assert_eq!(decide(true, 90, 120), None);
        assert_eq!(decide(true, 10, GATHER_BELOW - 1), Some(false));
        assert_eq!(decide(true, 10, GATHER_BELOW), None);
        // Gathered, the summed load must not spread again at once.
        const { assert!(GATHER_BELOW < SPREAD_AT) };
    }

    // The fallback platform (`--cfg socketkit_sys_fallback`) has no reuseport program.
    #[cfg(all(target_os = "linux", not(socketkit_sys_fallback)))]
    #[test]
    fn gathered_connections_land_on_the_first_listener_and_spread_ones_on_both() {
        let (first, second) = reuseport_pair();
        let steering = Steering::attach(first.as_fd(), 2)
            .ok()
            .flatten()
            .expect("the kernel takes the program");
        assert_eq!(land(&first, &second, 64), (64, 0));
        let mut watch = steering.watch_thread();
        // A worker that reports a busy window spreads the group.
        steering.record(watch.index, 95, second.as_fd());
        assert!(steering.is_spread());
        let (a, b) = land(&first, &second, 64);
        assert_eq!(a + b, 64);
        assert!(a > 0 && b > 0, "spread over both: {a} and {b}");
        // Light windows from both gather it again.
        steering.record(0, 5, first.as_fd());
        steering.record(1, 5, first.as_fd());
        assert!(!steering.is_spread());
        assert_eq!(land(&first, &second, 32), (32, 0));
        // A turn inside the window records nothing.
        watch.turn(first.as_fd());
        assert!(!steering.is_spread());
    }
}
