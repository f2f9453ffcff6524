//! The targets of a stream relay: one, or several taken in turn with failover.
//!
//! Each client's attempts follow an order: with [`Balance::RoundRobin`] it starts one target
//! further along than the client before it, with [`Balance::First`] always at the first
//! (the others are its backups), with [`Balance::Source`] at the target its address hashes
//! to. A target that failed within the last
//! [`retry_after`](super::Forward::retry_after) goes to the end of the order instead of
//! being skipped, so that a client is never refused while any target might take it, and a
//! target that is down costs the others' clients nothing while a healthy one is left.
//! Nothing has been relayed when a target fails (the relay starts once the connection, its
//! PROXY header and its TLS handshake are through), so the next target gets the client
//! whole.
//!
//! The marks are kept without a lock: a target's "down until" is one atomic word, read once
//! per attempt and written only when it changes. The list itself is swapped whole when it
//! is reloaded ([`super::Forward::reload_targets`]): a client's order is made from one list,
//! and a target the new list keeps is the same target, with its marks and counts.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::access::canonical;
use crate::endpoint::Endpoint;
use crate::metrics::Metrics;

mod target;
#[cfg(test)]
mod tests;

pub(crate) use target::{Target, Verdict};

/// The most targets one relay takes: a client's order is worked out from one 64-bit word
/// of marks.
pub const MAX_TARGETS: usize = 64;

/// How a relay with several targets chooses where each client goes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balance {
    /// Each client starts one target further along than the client before it (the next
    /// ones are its failover); the turns of a target marked down are spread over the
    /// targets up.
    #[default]
    RoundRobin,
    /// Every client starts at the first target; the others are tried, in the order given,
    /// only when the ones before them fail (primary and backups).
    First,
    /// Each client starts at the target with the fewest relayed connections open (ties
    /// taken in turn), for connections that last: a target that holds many long ones gets
    /// fewer new ones.
    LeastConnections,
    /// Each client starts at the target its address hashes to (an IPv4 address, or an IPv6
    /// /64, as `--max-per-source` counts sources), so that a client comes back to the same
    /// target while it is up and the list is unchanged — on every relay given the same
    /// list, for the hash is fixed (HAProxy's `balance source`, nginx's `ip_hash`). A
    /// client whose target is down goes to one of those up, the same one each time, the
    /// down target's clients spread evenly over them. Clients with no IP address (Unix
    /// sockets) are taken in turn.
    Source,
}

/// Where a client from `source` starts among `count` targets under [`Balance::Source`]:
/// the same for every process and every run, so that relays side by side agree.
pub(crate) fn source_slot(source: IpAddr, count: usize) -> usize {
    // In range: the remainder of a division by `count`, which fits in usize.
    (source_hash(source) % count as u64) as usize
}

/// The index of the `nth` target (from 0) of `count` whose bit in `down` is clear; there
/// are more than `nth` of them.
fn nth_up(down: u64, count: usize, nth: usize) -> usize {
    (0..count)
        .filter(|&index| down & 1 << index == 0)
        .nth(nth)
        .unwrap_or(0)
}

/// A source's fixed hash (see [`source_slot`]).
fn source_hash(source: IpAddr) -> u64 {
    let key: u128 = match canonical(source) {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        // The /64: a host's addresses within it are one source.
        IpAddr::V6(v6) => (u128::from(v6) >> 64) | 1 << 127,
    };
    // SplitMix64's finalizer: neighbouring addresses land on unrelated targets.
    let mut mixed = (key as u64) ^ ((key >> 64) as u64);
    mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    mixed ^ (mixed >> 31)
}

/// The targets of one list, in the order given.
pub(crate) type List = Vec<Arc<Target>>;

/// The relay's targets and what it remembers of their failures.
#[derive(Debug)]
pub(crate) struct Targets {
    /// At least one, at most [`MAX_TARGETS`].
    list: ArcSwap<List>,
    balance: Balance,
    retry_after: Duration,
    /// The next client's starting point, for round robin.
    next: AtomicUsize,
    /// Where the next client whose round-robin target is down goes among those up: its
    /// share spread over them, not all on the one after it.
    spread: AtomicUsize,
    /// What the marks count from.
    epoch: Instant,
    /// Where a target added later gets its counters.
    metrics: Option<Arc<Metrics>>,
    /// Targets a reload removed while relays still held them: one that a later reload names
    /// again is the same target (its open connections counted, for `least-conn` and the
    /// active gauge), and its series stay until it is gone.
    retired: std::sync::Mutex<Vec<(Endpoint, Weak<Target>)>>,
    /// Whether `retired` holds any, read without its lock on every relay's end.
    any_retired: AtomicBool,
}

/// What a reload changed ([`Forward::reload_targets`](super::Forward::reload_targets)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Targets of the new list that the old one did not have.
    pub added: Vec<Endpoint>,
    /// Targets of the old list that the new one does not have.
    pub removed: Vec<Endpoint>,
    /// The same targets in another order (which moves clients under `--balance first` and
    /// `source`).
    pub reordered: bool,
}

impl Reloaded {
    /// What a reload from `old` to `new` changes; a target named twice counts twice.
    pub(crate) fn between(old: &[Endpoint], new: &[Endpoint]) -> Reloaded {
        let mut left: Vec<Option<&Endpoint>> = old.iter().map(Some).collect();
        let mut added = Vec::new();
        for endpoint in new {
            let kept = left
                .iter_mut()
                .find(|slot| **slot == Some(endpoint))
                .and_then(Option::take);
            if kept.is_none() {
                added.push(endpoint.clone());
            }
        }
        let removed: Vec<Endpoint> = left.into_iter().flatten().cloned().collect();
        let reordered = added.is_empty() && removed.is_empty() && old != new;
        Reloaded {
            added,
            removed,
            reordered,
        }
    }
}

/// Takes out of `retired` the targets whose last relay has ended, and gives their endpoints.
fn let_go(retired: &mut Vec<(Endpoint, Weak<Target>)>) -> Vec<Endpoint> {
    let mut ended = Vec::new();
    retired.retain(|(endpoint, target)| {
        let held = target.strong_count() > 0;
        if !held {
            ended.push(endpoint.clone());
        }
        held
    });
    ended
}

impl Targets {
    /// Ten seconds, as nginx's `fail_timeout`: long enough that a dead target costs a burst
    /// of clients one failed attempt between them, short enough that one back up gets its
    /// share soon.
    pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(10);

    /// The one target of a relay.
    pub(crate) fn one(endpoint: Endpoint) -> Targets {
        Targets {
            list: ArcSwap::from_pointee(vec![Arc::new(Target::new(endpoint, None))]),
            balance: Balance::default(),
            retry_after: Targets::RETRY_AFTER,
            next: AtomicUsize::new(0),
            spread: AtomicUsize::new(0),
            epoch: Instant::now(),
            metrics: None,
            retired: std::sync::Mutex::default(),
            any_retired: AtomicBool::new(false),
        }
    }

    /// Adds a target after the others; false when there are [`MAX_TARGETS`] already.
    pub(crate) fn push(&mut self, endpoint: Endpoint) -> bool {
        let mut list = List::clone(&self.list.load());
        if list.len() == MAX_TARGETS {
            return false;
        }
        list.push(Arc::new(Target::new(endpoint, self.metrics.as_deref())));
        self.list.store(Arc::new(list));
        true
    }

    pub(crate) fn set_balance(&mut self, balance: Balance) {
        self.balance = balance;
    }

    pub(crate) fn set_retry_after(&mut self, retry_after: Duration) {
        self.retry_after = retry_after;
    }

    pub(crate) fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// Counts each target's connections and failures into `metrics`.
    pub(crate) fn set_metrics(&mut self, metrics: Arc<Metrics>) {
        let list: List = self
            .list
            .load()
            .iter()
            .map(|target| Arc::new(target.copy(Some(&metrics))))
            .collect();
        self.list.store(Arc::new(list));
        self.metrics = Some(metrics);
    }

    /// The metrics the targets are counted into, if any.
    pub(crate) fn metrics(&self) -> Option<&Arc<Metrics>> {
        self.metrics.as_ref()
    }

    /// The targets in the order they were given.
    pub(crate) fn endpoints(&self) -> Vec<Endpoint> {
        self.list
            .load()
            .iter()
            .map(|target| target.endpoint.clone())
            .collect()
    }

    /// The list in force, for a round of health checks.
    pub(crate) fn snapshot(&self) -> Arc<List> {
        self.list.load_full()
    }

    pub(crate) fn balance(&self) -> Balance {
        self.balance
    }

    /// Puts `endpoints` (one at least, at most [`MAX_TARGETS`]: the caller checks) in force
    /// for the clients that come next. A target named in both lists stays the same target
    /// — its marks, its open connections, its counters — as many times as both name it;
    /// the others start afresh. Relays already running keep their connections.
    pub(crate) fn reload(&self, endpoints: Vec<Endpoint>) -> Reloaded {
        let old = self.list.load_full();
        let mut retired = self
            .retired
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Retired targets whose last relay has ended: their series go below, unless this
        // list names them again.
        let ended = let_go(&mut retired);
        let mut left: Vec<Option<&Arc<Target>>> = old.iter().map(Some).collect();
        let mut added = Vec::new();
        let list: List = endpoints
            .into_iter()
            .map(|endpoint| {
                let kept = left
                    .iter_mut()
                    .find(|slot| slot.is_some_and(|target| target.endpoint == endpoint))
                    .and_then(Option::take);
                if let Some(target) = kept {
                    return Arc::clone(target);
                }
                added.push(endpoint.clone());
                let back = retired
                    .iter()
                    .position(|(was, _)| *was == endpoint)
                    .and_then(|at| retired.swap_remove(at).1.upgrade());
                back.unwrap_or_else(|| Arc::new(Target::new(endpoint, self.metrics.as_deref())))
            })
            .collect();
        let gone: Vec<&Arc<Target>> = left.into_iter().flatten().collect();
        let removed: Vec<Endpoint> = gone.iter().map(|target| target.endpoint.clone()).collect();
        // Held by relays still open: kept aside, its series with it, until it is gone.
        for target in gone {
            if Arc::strong_count(target) > 1 {
                retired.push((target.endpoint.clone(), Arc::downgrade(target)));
            }
        }
        self.forget_series(removed.iter().chain(&ended), &list, &retired);
        let reordered = added.is_empty()
            && removed.is_empty()
            && old
                .iter()
                .map(|t| &t.endpoint)
                .ne(list.iter().map(|t| &t.endpoint));
        self.list.store(Arc::new(list));
        Reloaded {
            added,
            removed,
            reordered,
        }
    }

    /// Forgets the metric series of the targets a reload removed whose last relay has now
    /// ended (unless the list names them again): called as each relay ends, so that a
    /// removed target leaves the metrics when its traffic does, not at the next reload.
    /// Costs one atomic load while no target is retired.
    pub(crate) fn let_go_of_retired(&self) {
        if !self.any_retired.load(Ordering::Relaxed) {
            return;
        }
        let mut retired = self
            .retired
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let ended = let_go(&mut retired);
        self.forget_series(&ended, &self.list.load(), &retired);
    }

    /// Forgets the metric series of each target of `left` that neither `list` nor `retired`
    /// names (a target named twice, or back, keeps them), and notes whether any target is
    /// still retired. Called with `retired` locked.
    fn forget_series<'a>(
        &self,
        left: impl IntoIterator<Item = &'a Endpoint>,
        list: &List,
        retired: &[(Endpoint, Weak<Target>)],
    ) {
        self.any_retired
            .store(!retired.is_empty(), Ordering::Relaxed);
        let Some(metrics) = &self.metrics else {
            return;
        };
        for endpoint in left {
            let named = list.iter().any(|target| &target.endpoint == endpoint)
                || retired.iter().any(|(was, _)| was == endpoint);
            if !named {
                metrics.forget_forward_target(&endpoint.to_string());
            }
        }
    }

    /// Where the next client, from `source` if it has an IP address, tries to go, in order:
    /// each target once, those marked down after the others.
    pub(crate) fn order(&self, source: Option<IpAddr>) -> Order {
        let list = self.list.load_full();
        let count = list.len();
        // The clock is read only when a target has a mark: not at all while every target
        // is up, the common case, on this per-connection path.
        let mut now = None;
        let down = list
            .iter()
            .enumerate()
            .filter(|(_, target)| {
                let until = target.down_until.load(Ordering::Relaxed);
                until != 0 && until > *now.get_or_insert_with(|| self.now())
            })
            .fold(0u64, |marks, (index, _)| marks | 1 << index);
        let start = match self.balance {
            _ if count == 1 => 0,
            Balance::First => 0,
            Balance::RoundRobin => self.next.fetch_add(1, Ordering::Relaxed) % count,
            Balance::LeastConnections => {
                let from = self.next.fetch_add(1, Ordering::Relaxed) % count;
                (0..count)
                    .map(|step| (from + step) % count)
                    .filter(|&index| down & 1 << index == 0)
                    .min_by_key(|&index| list[index].active.load(Ordering::Relaxed))
                    .unwrap_or(from)
            }
            Balance::Source => match source {
                Some(source) => source_slot(source, count),
                None => self.next.fetch_add(1, Ordering::Relaxed) % count,
            },
        };
        // A down target's clients spread over the targets up, as HAProxy's and nginx's do,
        // rather than all going to the one after it (which then took twice its share).
        let up = count - (down.count_ones() as usize).min(count);
        let start = match self.balance {
            Balance::RoundRobin | Balance::Source if down & 1 << start != 0 && up > 0 => {
                let nth = match (self.balance, source) {
                    // The same place for the same source, unrelated to its first choice.
                    (Balance::Source, Some(source)) => {
                        usize::try_from((source_hash(source) / count as u64) % up as u64)
                            .unwrap_or(0)
                    }
                    _ => self.spread.fetch_add(1, Ordering::Relaxed) % up,
                };
                nth_up(down, count, nth)
            }
            _ => start,
        };
        Order {
            list,
            start,
            down,
            step: 0,
        }
    }

    /// Remembers that `target` failed a client: it is tried last for `retry_after` (or
    /// longer, if a health check has marked it down until one passes).
    pub(crate) fn failed(&self, target: &Target) {
        let until = self.now().saturating_add(nanos(self.retry_after)).max(1);
        target.down_until.fetch_max(until, Ordering::Relaxed);
        if let Some(metrics) = &target.metrics {
            metrics.failed.inc();
            metrics.up.set(0);
        }
    }

    fn now(&self) -> u64 {
        nanos(self.epoch.elapsed())
    }
}

/// A copy with the same marks and targets of its own, for a relay's builder whose targets
/// are already shared.
impl Clone for Targets {
    fn clone(&self) -> Targets {
        let list: List = self
            .list
            .load()
            .iter()
            .map(|target| Arc::new(target.copy(None)))
            .collect();
        Targets {
            list: ArcSwap::from_pointee(list),
            balance: self.balance,
            retry_after: self.retry_after,
            next: AtomicUsize::new(self.next.load(Ordering::Relaxed)),
            spread: AtomicUsize::new(self.spread.load(Ordering::Relaxed)),
            epoch: self.epoch,
            metrics: self.metrics.clone(),
            retired: std::sync::Mutex::default(),
            any_retired: AtomicBool::new(false),
        }
    }
}

fn nanos(span: Duration) -> u64 {
    u64::try_from(span.as_nanos()).unwrap_or(u64::MAX)
}

/// One client's order of targets (see [`Targets::order`]), from the list in force when it
/// was made.
pub(crate) struct Order {
    list: Arc<List>,
    start: usize,
    /// Bit `i` set: target `i` was marked down when the order was made.
    down: u64,
    /// 0..count: the targets not marked down, from `start` on; count..2 × count: the others.
    step: usize,
}

impl Order {
    /// How many targets the order has.
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }
}

impl Iterator for Order {
    type Item = Arc<Target>;

    fn next(&mut self) -> Option<Self::Item> {
        let count = self.list.len();
        while self.step < 2 * count {
            let pass_of_the_down = self.step >= count;
            let index = (self.start + self.step) % count;
            self.step += 1;
            let is_down = self.down & (1 << index) != 0;
            if is_down == pass_of_the_down {
                return Some(Arc::clone(&self.list[index]));
            }
        }
        None
    }
}
