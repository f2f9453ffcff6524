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
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::access::canonical;
use crate::endpoint::Endpoint;
use crate::metrics::{Metrics, TargetMetrics};

/// The most targets one relay takes: a client's order is worked out from one 64-bit word
/// of marks.
pub const MAX_TARGETS: usize = 64;

/// How a relay with several targets chooses where each client goes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balance {
    /// Each client starts one target further along than the client before it (the next
    /// ones are its failover).
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
    /// client whose target is down goes to the next one up. Clients with no IP address
    /// (Unix sockets) are taken in turn.
    Source,
}

/// Where a client from `source` starts among `count` targets under [`Balance::Source`]:
/// the same for every process and every run, so that relays side by side agree.
pub(crate) fn source_slot(source: IpAddr, count: usize) -> usize {
    let key: u128 = match canonical(source) {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        // The /64: a host's addresses within it are one source.
        IpAddr::V6(v6) => (u128::from(v6) >> 64) | 1 << 127,
    };
    // SplitMix64's finalizer: neighbouring addresses land on unrelated targets.
    let mut mixed = (key as u64) ^ ((key >> 64) as u64);
    mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    mixed ^= mixed >> 31;
    // In range: the remainder of a division by `count`, which fits in usize.
    (mixed % count as u64) as usize
}

/// The targets of one list, in the order given.
type List = Vec<Arc<Target>>;

/// The relay's targets and what it remembers of their failures.
#[derive(Debug)]
pub(crate) struct Targets {
    /// At least one, at most [`MAX_TARGETS`].
    list: ArcSwap<List>,
    balance: Balance,
    retry_after: Duration,
    /// The next client's starting point, for round robin.
    next: AtomicUsize,
    /// What the marks count from.
    epoch: Instant,
    /// Where a target added later gets its counters.
    metrics: Option<Arc<Metrics>>,
}

/// One target, and what is known of it.
#[derive(Debug)]
pub(crate) struct Target {
    endpoint: Endpoint,
    /// Nanoseconds after `epoch` until which this target is tried last; 0 when it has not
    /// failed (or has since taken a connection).
    down_until: AtomicU64,
    /// Relayed connections open now.
    active: AtomicUsize,
    /// Health checks in a row that passed (above 0) or failed (below 0).
    streak: AtomicI64,
    metrics: Option<TargetMetrics>,
}

/// What a health check's result did to its target ([`Target::check_passed`],
/// [`Target::check_failed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It was taken out, or back.
    Changed,
    /// It is on its way: this many in a row so far, short of the count that decides.
    Counting(u32),
    /// Nothing to say: it was where this result leaves it.
    Same,
}

/// What a reload changed ([`Forward::reload_targets`](super::Forward::reload_targets)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Targets of the new list that the old one did not have.
    pub added: Vec<Endpoint>,
    /// Targets of the old list that the new one does not have.
    pub removed: Vec<Endpoint>,
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
            epoch: Instant::now(),
            metrics: None,
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
        let mut left: Vec<Option<&Arc<Target>>> = old.iter().map(Some).collect();
        let mut added = Vec::new();
        let list: List = endpoints
            .into_iter()
            .map(|endpoint| {
                let kept = left
                    .iter_mut()
                    .find(|slot| slot.is_some_and(|target| target.endpoint == endpoint))
                    .and_then(Option::take);
                match kept {
                    Some(target) => Arc::clone(target),
                    None => {
                        added.push(endpoint.clone());
                        Arc::new(Target::new(endpoint, self.metrics.as_deref()))
                    }
                }
            })
            .collect();
        let removed: Vec<Endpoint> = left
            .into_iter()
            .flatten()
            .map(|target| target.endpoint.clone())
            .collect();
        if let Some(metrics) = &self.metrics {
            for endpoint in &removed {
                if !list.iter().any(|target| &target.endpoint == endpoint) {
                    metrics.forget_forward_target(&endpoint.to_string());
                }
            }
        }
        self.list.store(Arc::new(list));
        Reloaded { added, removed }
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

impl Target {
    fn new(endpoint: Endpoint, metrics: Option<&Metrics>) -> Target {
        let metrics = metrics.map(|metrics| metrics.forward_target(&endpoint.to_string()));
        Target {
            endpoint,
            down_until: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            streak: AtomicI64::new(0),
            metrics,
        }
    }

    /// A target of its own with this one's endpoint and mark (and `metrics`, if given, else
    /// the same counters), for a builder's copy of a list.
    fn copy(&self, metrics: Option<&Metrics>) -> Target {
        Target {
            endpoint: self.endpoint.clone(),
            down_until: AtomicU64::new(self.down_until.load(Ordering::Relaxed)),
            active: AtomicUsize::new(0),
            streak: AtomicI64::new(self.streak.load(Ordering::Relaxed)),
            metrics: match metrics {
                Some(metrics) => Some(metrics.forward_target(&self.endpoint.to_string())),
                None => self.metrics.clone(),
            },
        }
    }

    /// Where this target is.
    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// A health check of this target failed: at the `fall`th in a row it is tried last
    /// until a check or a client's connection succeeds.
    pub(crate) fn check_failed(&self, fall: u32) -> Verdict {
        // Only the checks' task writes the streak: a load and a store are enough.
        let failed = self.streak.load(Ordering::Relaxed).min(0) - 1;
        self.streak.store(failed, Ordering::Relaxed);
        let failed = u32::try_from(-failed).unwrap_or(u32::MAX);
        if self.down_until.load(Ordering::Relaxed) == u64::MAX {
            return Verdict::Same;
        }
        if failed < fall {
            return Verdict::Counting(failed);
        }
        if let Some(metrics) = &self.metrics {
            metrics.up.set(0);
        }
        // Marked by a client's failure before: down for longer now, and it was said then.
        if self.down_until.swap(u64::MAX, Ordering::Relaxed) == 0 {
            Verdict::Changed
        } else {
            Verdict::Same
        }
    }

    /// A health check of this target passed: at the `rise`th in a row its mark, if any, is
    /// cleared.
    pub(crate) fn check_passed(&self, rise: u32) -> Verdict {
        let passed = self.streak.load(Ordering::Relaxed).max(0) + 1;
        self.streak.store(passed, Ordering::Relaxed);
        let passed = u32::try_from(passed).unwrap_or(u32::MAX);
        if self.down_until.load(Ordering::Relaxed) == 0 {
            return Verdict::Same;
        }
        if passed < rise {
            return Verdict::Counting(passed);
        }
        if let Some(metrics) = &self.metrics {
            metrics.up.set(1);
        }
        if self.down_until.swap(0, Ordering::Relaxed) != 0 {
            Verdict::Changed
        } else {
            Verdict::Same
        }
    }

    /// Forgets this target's failure, if any.
    pub(crate) fn succeeded(&self) {
        // Read first: the common case writes nothing, so the word stays shared between
        // the workers' caches.
        if self.down_until.load(Ordering::Relaxed) != 0 {
            self.down_until.store(0, Ordering::Relaxed);
            if let Some(metrics) = &self.metrics {
                metrics.up.set(1);
            }
        }
        if let Some(metrics) = &self.metrics {
            metrics.connected.inc();
        }
    }

    /// Counts a relayed connection to this target as open until the guard drops.
    pub(crate) fn open(self: &Arc<Target>) -> Open {
        self.active.fetch_add(1, Ordering::Relaxed);
        if let Some(metrics) = &self.metrics {
            metrics.active.inc();
        }
        Open {
            target: Arc::clone(self),
        }
    }
}

/// A relayed connection counted open on its target ([`Target::open`]).
pub(crate) struct Open {
    target: Arc<Target>,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.target.active.fetch_sub(1, Ordering::Relaxed);
        if let Some(metrics) = &self.target.metrics {
            metrics.active.dec();
        }
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
            epoch: self.epoch,
            metrics: self.metrics.clone(),
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn targets(count: usize, balance: Balance) -> Targets {
        let mut targets = Targets::one("127.0.0.1:9000".parse().unwrap());
        for port in 1..count {
            assert!(targets.push(format!("127.0.0.1:{}", 9000 + port).parse().unwrap()));
        }
        targets.set_balance(balance);
        targets
    }

    /// The target at `index` of the list in force.
    fn at(targets: &Targets, index: usize) -> Arc<Target> {
        Arc::clone(&targets.snapshot()[index])
    }

    /// The indices of an order's targets in the list in force.
    fn indices(targets: &Targets, order: Order) -> Vec<usize> {
        let list = targets.snapshot();
        order
            .map(|target| {
                list.iter()
                    .position(|listed| Arc::ptr_eq(listed, &target))
                    .expect("a listed target")
            })
            .collect()
    }

    fn order(targets: &Targets) -> Vec<usize> {
        indices(targets, targets.order(None))
    }

    #[test]
    fn round_robin_starts_one_further_each_time_and_tries_every_target_once() {
        let targets = targets(3, Balance::RoundRobin);
        assert_eq!(order(&targets), [0, 1, 2]);
        assert_eq!(order(&targets), [1, 2, 0]);
        assert_eq!(order(&targets), [2, 0, 1]);
        assert_eq!(order(&targets), [0, 1, 2]);
    }

    #[test]
    fn first_always_starts_at_the_first() {
        let targets = targets(3, Balance::First);
        assert_eq!(order(&targets), [0, 1, 2]);
        assert_eq!(order(&targets), [0, 1, 2]);
    }

    #[test]
    fn a_failed_target_is_tried_last_until_it_succeeds() {
        let targets = targets(3, Balance::First);
        targets.failed(&at(&targets, 0));
        assert_eq!(order(&targets), [1, 2, 0]);
        targets.failed(&at(&targets, 2));
        assert_eq!(order(&targets), [1, 0, 2]);
        at(&targets, 0).succeeded();
        assert_eq!(order(&targets), [0, 1, 2]);
    }

    #[test]
    fn a_failed_check_holds_a_target_last_until_a_check_passes() {
        let mut targets = targets(2, Balance::First);
        targets.set_retry_after(Duration::ZERO);
        assert_eq!(
            at(&targets, 0).check_failed(1),
            Verdict::Changed,
            "up before"
        );
        assert_eq!(
            at(&targets, 0).check_failed(1),
            Verdict::Same,
            "down already"
        );
        // A client's failure does not shorten the check's mark.
        targets.failed(&at(&targets, 0));
        assert_eq!(order(&targets), [1, 0]);
        assert_eq!(at(&targets, 0).check_passed(1), Verdict::Changed);
        assert_eq!(at(&targets, 0).check_passed(1), Verdict::Same);
        assert_eq!(order(&targets), [0, 1]);
    }

    #[test]
    fn checks_decide_only_after_fall_failures_and_rise_passes_in_a_row() {
        let targets = targets(2, Balance::First);
        let target = at(&targets, 0);
        // fall 3: two failures, a pass (the count starts again), three failures.
        assert_eq!(target.check_failed(3), Verdict::Counting(1));
        assert_eq!(target.check_failed(3), Verdict::Counting(2));
        assert_eq!(
            target.check_passed(2),
            Verdict::Same,
            "up: nothing to take back"
        );
        assert_eq!(target.check_failed(3), Verdict::Counting(1));
        assert_eq!(target.check_failed(3), Verdict::Counting(2));
        assert_eq!(order(&targets), [0, 1], "still up");
        assert_eq!(target.check_failed(3), Verdict::Changed);
        assert_eq!(order(&targets), [1, 0]);
        // rise 2: one pass is not enough; a failure starts the count again.
        assert_eq!(target.check_passed(2), Verdict::Counting(1));
        assert_eq!(target.check_failed(3), Verdict::Same, "down already");
        assert_eq!(target.check_passed(2), Verdict::Counting(1));
        assert_eq!(order(&targets), [1, 0]);
        assert_eq!(target.check_passed(2), Verdict::Changed);
        assert_eq!(order(&targets), [0, 1]);
        // A client's success takes a target back at once, whatever rise says.
        for _ in 0..3 {
            target.check_failed(3);
        }
        assert_eq!(order(&targets), [1, 0]);
        target.succeeded();
        assert_eq!(order(&targets), [0, 1]);
    }

    #[test]
    fn a_failure_is_forgotten_after_retry_after() {
        let mut targets = targets(2, Balance::First);
        targets.set_retry_after(Duration::ZERO);
        targets.failed(&at(&targets, 0));
        assert_eq!(order(&targets), [0, 1]);
    }

    #[test]
    fn least_connections_starts_at_the_emptiest_target_that_is_up() {
        let targets = targets(3, Balance::LeastConnections);
        let first = at(&targets, 0).open();
        let _second = at(&targets, 0).open();
        let _third = at(&targets, 1).open();
        assert_eq!(order(&targets)[0], 2);
        targets.failed(&at(&targets, 2));
        assert_eq!(order(&targets)[0], 1);
        drop(first);
        // 0 and 1 hold one each now: ties are taken in turn.
        let starts: Vec<usize> = (0..4).map(|_| order(&targets)[0]).collect();
        assert!(starts.contains(&0) && starts.contains(&1), "{starts:?}");
        assert!(!starts.contains(&2), "{starts:?}");
    }

    #[test]
    fn source_starts_each_address_at_its_own_target_and_passes_a_down_one_on() {
        let targets = targets(4, Balance::Source);
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        let start = |source: &str| indices(&targets, targets.order(Some(ip(source))))[0];
        let first = start("192.0.2.7");
        assert_eq!(
            start("192.0.2.7"),
            first,
            "the same address, the same target"
        );
        assert_eq!(
            start("::ffff:192.0.2.7"),
            first,
            "mapped IPv4 is the address"
        );
        assert_eq!(
            start("2001:db8:1:2::1"),
            start("2001:db8:1:2:ffff::9"),
            "one /64"
        );
        let spread: std::collections::HashSet<usize> = (0..=255u8)
            .map(|host| start(&format!("198.51.100.{host}")))
            .collect();
        assert_eq!(spread.len(), 4, "256 addresses over 4 targets");
        // No address (a Unix client): in turn.
        assert_ne!(order_none_start(&targets), order_none_start(&targets));
        targets.failed(&at(&targets, first));
        let order = indices(&targets, targets.order(Some(ip("192.0.2.7"))));
        assert_eq!(
            order,
            [(first + 1) % 4, (first + 2) % 4, (first + 3) % 4, first]
        );
    }

    fn order_none_start(targets: &Targets) -> usize {
        order(targets)[0]
    }

    #[test]
    fn the_source_hash_is_fixed() {
        // Relays side by side, and a relay after a restart, must agree: these values are
        // the contract, not an accident of the build.
        let slots: Vec<usize> = ["10.0.0.1", "10.0.0.2", "2001:db8::1"]
            .iter()
            .map(|text| source_slot(text.parse().unwrap(), 1000))
            .collect();
        assert_eq!(slots, [270, 975, 691]);
    }

    #[test]
    fn a_reload_keeps_what_is_known_of_the_targets_it_keeps() {
        let targets = targets(3, Balance::LeastConnections);
        let endpoint = |port: u16| -> Endpoint { format!("127.0.0.1:{port}").parse().unwrap() };
        targets.failed(&at(&targets, 0));
        let open = at(&targets, 1).open();
        let before = targets.order(None);
        // 9000 and 9001 stay (in a new order), 9002 goes, 9005 comes.
        let changed = targets.reload(vec![endpoint(9001), endpoint(9005), endpoint(9000)]);
        assert_eq!(changed.added, [endpoint(9005)]);
        assert_eq!(changed.removed, [endpoint(9002)]);
        assert_eq!(
            targets.endpoints(),
            [endpoint(9001), endpoint(9005), endpoint(9000)]
        );
        // 9000 is still marked down (last), 9001 still holds a connection: 9005 first.
        assert_eq!(order(&targets), [1, 0, 2]);
        drop(open);
        assert_eq!(at(&targets, 0).active.load(Ordering::Relaxed), 0);
        // An order made before the reload goes on with the list it was made from.
        let mut old: Vec<String> = before.map(|target| target.endpoint().to_string()).collect();
        old.sort();
        assert_eq!(
            old,
            [
                "tcp:127.0.0.1:9000",
                "tcp:127.0.0.1:9001",
                "tcp:127.0.0.1:9002"
            ]
        );
        // A target named twice is kept as often as both lists name it.
        let changed = targets.reload(vec![endpoint(9001), endpoint(9001)]);
        assert_eq!(changed.added, [endpoint(9001)]);
        assert_eq!(changed.removed, [endpoint(9005), endpoint(9000)]);
    }

    #[test]
    fn every_target_down_still_gives_every_target() {
        let targets = targets(3, Balance::RoundRobin);
        for index in 0..3 {
            targets.failed(&at(&targets, index));
        }
        let mut seen = order(&targets);
        seen.sort_unstable();
        assert_eq!(seen, [0, 1, 2]);
    }

    proptest! {
        /// Whatever the marks and the rotation, each client's order names every target
        /// once, those that were up first.
        #[test]
        fn an_order_is_every_target_once_the_up_ones_first(
            count in 1..=MAX_TARGETS,
            clients_before in 0usize..200,
            marks: u64,
            policy in 0u8..4,
            source: Option<std::net::Ipv6Addr>,
        ) {
            let balance = [
                Balance::RoundRobin,
                Balance::First,
                Balance::LeastConnections,
                Balance::Source,
            ][usize::from(policy)];
            let targets = targets(count, balance);
            for _ in 0..clients_before {
                let _ = targets.order(None);
            }
            for index in (0..count).filter(|index| marks & 1 << index != 0) {
                targets.failed(&at(&targets, index));
            }
            let seen = indices(&targets, targets.order(source.map(IpAddr::V6)));
            let mut sorted = seen.clone();
            sorted.sort_unstable();
            prop_assert_eq!(sorted, (0..count).collect::<Vec<_>>());
            let is_down = |index: &usize| marks & 1 << *index != 0;
            let first_down = seen.iter().position(is_down).unwrap_or(count);
            prop_assert!(seen[first_down..].iter().all(is_down));
        }
    }

    #[test]
    fn no_more_than_max_targets() {
        let targets = targets(MAX_TARGETS, Balance::RoundRobin);
        let mut targets = targets;
        assert!(!targets.push("127.0.0.1:1".parse().unwrap()));
        targets.failed(&at(&targets, MAX_TARGETS - 1));
        assert_eq!(order(&targets).last(), Some(&(MAX_TARGETS - 1)));
    }
}
