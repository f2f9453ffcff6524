//! Per-source limits: how many connections one source may hold at once, and how fast it may
//! open new ones (a token bucket), in a table whose memory is bounded whatever the traffic.
//!
//! A source is an IPv4 address, or an IPv6 /64 (one host's usual allocation, so a host
//! cannot escape its limit by walking its own /64). The table is split into shards, each
//! behind its own lock held for one hash lookup, so workers rarely meet.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::cidr_set::canonical;

/// At most this many sources are tracked at once (across all shards): about 4 MiB. Past it,
/// sources with no connection open are forgotten first (which only makes the limits more
/// lenient for them); a new source that still finds no room is admitted without a limit,
/// and counted in [`SourceLimits::untracked`].
pub const MAX_TRACKED_SOURCES: usize = 65_536;

const SHARDS: usize = 16;

/// A rate of new connections: `count` per `per` (`20/1s`, `100/1m`).
///
/// # Examples
///
/// ```
/// use socketkit::access::Rate;
/// let rate: Rate = "20/1s".parse().unwrap();
/// assert_eq!(rate.count, 20);
/// assert_eq!(rate.to_string(), "20/1s");
/// assert!("0/1s".parse::<Rate>().is_err());
/// assert!("5/0s".parse::<Rate>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// How many connections (also the burst a quiet source may open at once).
    pub count: u32,
    /// In how long.
    pub per: Duration,
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Rate, String> {
        let (count, per) = text
            .split_once('/')
            .ok_or_else(|| "expected N/DURATION, e.g. 20/1s".to_owned())?;
        let count: u32 = count
            .trim()
            .parse()
            .ok()
            .filter(|&c| c > 0)
            .ok_or_else(|| format!("'{count}': the count must be 1-{}", u32::MAX))?;
        let per = per.trim();
        // A bare unit reads as one of it: `100/m` is `100/1m`.
        let per = if per.starts_with(|c: char| c.is_ascii_alphabetic()) {
            humantime::parse_duration(&format!("1{per}"))
        } else {
            humantime::parse_duration(per)
        }
        .map_err(|err| format!("'{per}': {err}"))?;
        if per.is_zero() {
            return Err("the duration must be more than 0".to_owned());
        }
        Ok(Rate { count, per })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, humantime::format_duration(self.per))
    }
}

/// Why a source was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceRefusal {
    /// It already holds `--max-per-source` connections.
    MaxPerSource,
    /// It opened connections faster than `--rate-per-source`.
    Rate,
}

impl SourceRefusal {
    /// The refusal in words, for the log (static: a flood of refusals allocates nothing).
    pub fn as_str(self) -> &'static str {
        match self {
            SourceRefusal::MaxPerSource => "the source has its maximum of connections open",
            SourceRefusal::Rate => "the source opens connections faster than its rate",
        }
    }
}

/// The per-source limits of one server, shared by its accept loops.
///
/// # Examples
///
/// ```
/// use socketkit::access::{SourceLimits, SourceRefusal};
/// let limits = SourceLimits::new(Some(1), None);
/// let source = "127.0.0.2".parse().unwrap();
/// let first = limits.admit(source).unwrap();
/// assert_eq!(limits.admit(source).unwrap_err(), SourceRefusal::MaxPerSource);
/// assert!(limits.admit("127.0.0.3".parse().unwrap()).is_ok(), "another source is unaffected");
/// drop(first);
/// assert!(limits.admit(source).is_ok(), "closing frees the place");
/// ```
#[derive(Debug)]
pub struct SourceLimits {
    max_per_source: Option<u32>,
    rate: Option<Rate>,
    shards: Vec<Mutex<HashMap<u128, Entry>>>,
    untracked: std::sync::atomic::AtomicU64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    active: u32,
    tokens: f64,
    refilled: Instant,
}

/// A connection's place in its source's count, given back on drop.
#[derive(Debug)]
#[must_use = "the place is given back when this is dropped"]
pub struct SourceSlot {
    limits: Option<Arc<SourceLimits>>,
    key: u128,
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        if let Some(limits) = &self.limits {
            let mut shard = limits.shard(self.key);
            if let Some(entry) = shard.get_mut(&self.key) {
                entry.active = entry.active.saturating_sub(1);
            }
        }
    }
}

impl SourceLimits {
    /// Limits with at most `max_per_source` connections at once per source and new
    /// connections at `rate` (either may be absent).
    pub fn new(max_per_source: Option<u32>, rate: Option<Rate>) -> Arc<SourceLimits> {
        Arc::new(SourceLimits {
            max_per_source,
            rate,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            untracked: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Admits a new connection from `source`, or says why not. The returned slot holds the
    /// connection's place until it drops.
    ///
    /// # Errors
    ///
    /// [`SourceRefusal::MaxPerSource`] or [`SourceRefusal::Rate`].
    pub fn admit(self: &Arc<Self>, source: IpAddr) -> Result<SourceSlot, SourceRefusal> {
        let key = source_key(source);
        let now = Instant::now();
        let mut shard = self.shard(key);
        if !shard.contains_key(&key) && shard.len() >= MAX_TRACKED_SOURCES / SHARDS {
            self.forget_idle(&mut shard, now);
            if shard.len() >= MAX_TRACKED_SOURCES / SHARDS {
                self.untracked
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Ok(SourceSlot { limits: None, key });
            }
        }
        let burst = self.rate.map_or(0.0, |r| f64::from(r.count));
        let entry = shard.entry(key).or_insert(Entry {
            active: 0,
            tokens: burst,
            refilled: now,
        });
        if self.max_per_source.is_some_and(|max| entry.active >= max) {
            return Err(SourceRefusal::MaxPerSource);
        }
        if let Some(rate) = self.rate {
            entry.tokens = refill(entry, rate, now);
            entry.refilled = now;
            if entry.tokens < 1.0 {
                return Err(SourceRefusal::Rate);
            }
            entry.tokens -= 1.0;
        }
        entry.active += 1;
        Ok(SourceSlot {
            limits: Some(Arc::clone(self)),
            key,
        })
    }

    /// Admits one datagram from `source` under the rate (datagrams hold no place).
    ///
    /// # Errors
    ///
    /// [`SourceRefusal::Rate`].
    pub fn admit_datagram(self: &Arc<Self>, source: IpAddr) -> Result<(), SourceRefusal> {
        if self.rate.is_none() {
            return Ok(());
        }
        let slot = self.admit(source)?;
        drop(slot);
        Ok(())
    }

    /// How many sources are tracked now.
    pub fn tracked(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// How many connections were admitted untracked because the table was full.
    pub fn untracked(&self) -> u64 {
        self.untracked.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn shard(&self, key: u128) -> MutexGuard<'_, HashMap<u128, Entry>> {
        // The key's low bits vary most between sources (the host part of an IPv4 address,
        // the /64's low bits), so they pick the shard.
        let index = usize::try_from(key % SHARDS as u128).unwrap_or(0);
        lock(&self.shards[index])
    }

    /// Drops the entries that carry nothing: no open connection and a full bucket.
    /// If none is that idle, drops every entry without an open connection.
    fn forget_idle(&self, shard: &mut HashMap<u128, Entry>, now: Instant) {
        let before = shard.len();
        shard.retain(|_, entry| {
            entry.active > 0
                || self
                    .rate
                    .is_some_and(|rate| refill(entry, rate, now) < f64::from(rate.count))
        });
        if shard.len() == before {
            shard.retain(|_, entry| entry.active > 0);
        }
    }
}

/// The bucket's tokens at `now`: what it had, plus what the time since brought, up to the
/// burst.
fn refill(entry: &Entry, rate: Rate, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(entry.refilled).as_secs_f64();
    let per_second = f64::from(rate.count) / rate.per.as_secs_f64();
    (entry.tokens + elapsed * per_second).min(f64::from(rate.count))
}

/// The table key of a source: an IPv4 address (mapped IPv6 counts as IPv4) in the low 32
/// bits with a marker bit above, or an IPv6 address cut to its /64.
fn source_key(source: IpAddr) -> u128 {
    match canonical(source) {
        IpAddr::V4(v4) => (1u128 << 127) | u128::from(u32::from(v4)),
        // The /64 network, shifted down so that its low bits (which vary most) pick shards.
        IpAddr::V6(v6) => u128::from(v6) >> 64,
    }
}

/// Locks a shard; a poisoned lock (a panic while holding it) still guards a sound table,
/// since every update is a single field write.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn one_ipv6_slash_64_is_one_source() {
        let limits = SourceLimits::new(Some(1), None);
        let _held = limits.admit(ip("2001:db8::1")).expect("first");
        assert_eq!(
            limits.admit(ip("2001:db8::ffff")).unwrap_err(),
            SourceRefusal::MaxPerSource
        );
        assert!(limits.admit(ip("2001:db8:0:1::1")).is_ok(), "another /64");
    }

    #[test]
    fn mapped_and_plain_ipv4_are_the_same_source() {
        let limits = SourceLimits::new(Some(1), None);
        let _held = limits.admit(ip("127.0.0.2")).expect("first");
        assert!(limits.admit(ip("::ffff:127.0.0.2")).is_err());
    }

    #[test]
    fn the_bucket_allows_a_burst_then_refills_over_time() {
        // A token a second: the refusal holds however long a loaded machine stalls the
        // test between the admissions, up to a second.
        let limits = SourceLimits::new(None, Some("3/3s".parse().expect("a rate")));
        let started = std::time::Instant::now();
        for _ in 0..3 {
            drop(limits.admit(ip("127.0.0.2")).expect("within the burst"));
        }
        let fourth = limits.admit(ip("127.0.0.2"));
        assert!(
            matches!(fourth, Err(SourceRefusal::Rate))
                || started.elapsed() >= Duration::from_secs(1),
            "a fourth admission within a second of the burst: {:?}",
            fourth.map(drop)
        );
        assert!(
            limits.admit(ip("127.0.0.3")).is_ok(),
            "another source has its own bucket"
        );
        std::thread::sleep(Duration::from_millis(1100));
        assert!(limits.admit(ip("127.0.0.2")).is_ok(), "a token came back");
    }

    #[test]
    fn a_flood_of_distinct_sources_stays_within_the_bound() {
        let limits = SourceLimits::new(None, Some("1/1h".parse().expect("a rate")));
        for i in 0..(MAX_TRACKED_SOURCES as u32 * 3) {
            let source = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let _ = limits.admit(source);
        }
        assert!(limits.tracked() <= MAX_TRACKED_SOURCES);
    }

    #[test]
    fn rates_parse_and_print_back() {
        for text in ["20/1s", "100/1m", "1/500ms", "7/1h"] {
            let rate: Rate = text.parse().expect("a rate");
            assert_eq!(rate.to_string(), text);
        }
        assert_eq!(
            "100/m".parse::<Rate>().unwrap().per,
            Duration::from_secs(60)
        );
        assert!("20".parse::<Rate>().is_err());
        assert!("-1/1s".parse::<Rate>().is_err());
        assert!("20/soon".parse::<Rate>().is_err());
    }
}
