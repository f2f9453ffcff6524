//! Health checks of a relay's targets ([`super::Forward::check_every`]): every interval,
//! each target is connected to as a client would be (through the proxy, with a PROXY header
//! that names no client — v1 `UNKNOWN`, v2 `LOCAL` — and a `tls:` target's handshake) and
//! the connection closed. A check that fails marks the target down (tried after the others)
//! until a check or a client's connection succeeds, so that a target that died costs no
//! client a failed attempt once a check has seen it, and one that came back gets its share
//! at the next check rather than after `retry_after`. Changes are logged: `health check:
//! tcp:… is down: connection refused`, `health check: tcp:… is up`.

use std::sync::Weak;
use std::time::Duration;

use tokio::time::MissedTickBehavior;

use crate::endpoint::Endpoint;
use crate::error::describe;

use super::dial::Dialer;
use super::targets::Targets;

/// The checks of one relay; they end once the relay (every clone of it) is dropped.
#[derive(Debug)]
pub(super) struct Checks {
    /// Weak: the checks must not keep a relay's targets alive.
    pub(super) targets: Weak<Targets>,
    /// With a timeout, always: a check never outlives its round by much.
    pub(super) dial: Dialer,
    /// The PROXY header of a check, if the relay sends them.
    pub(super) header: Option<Vec<u8>>,
    pub(super) interval: Duration,
}

impl Checks {
    /// Checks every target at once, every interval (the first round at once), until the
    /// relay is gone.
    pub(super) async fn run(self) {
        let mut ticks = tokio::time::interval(self.interval);
        // A round that took longer than the interval (targets that time out) is not
        // followed by a burst of rounds to catch up.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let through = self.dial.through();
        loop {
            ticks.tick().await;
            let Some(targets) = self.targets.upgrade() else {
                return;
            };
            let endpoints: Vec<Endpoint> = targets.endpoints().cloned().collect();
            drop(targets);
            let mut round = tokio::task::JoinSet::new();
            for (index, target) in endpoints.into_iter().enumerate() {
                let dial = self.dial.clone();
                let header = self.header.clone();
                round.spawn(async move {
                    let result = dial.connect(&target, header.as_deref()).await.map(drop);
                    (index, target, result)
                });
            }
            while let Some(checked) = round.join_next().await {
                let Ok((index, target, result)) = checked else {
                    continue; // a check that panicked: no verdict
                };
                let Some(targets) = self.targets.upgrade() else {
                    return;
                };
                match result {
                    Ok(()) => {
                        if targets.check_passed(index) {
                            tracing::info!("health check: {target}{through} is up");
                        }
                    }
                    Err(err) => {
                        if targets.check_failed(index) {
                            tracing::warn!(
                                "health check: {target}{through} is down: {}",
                                describe(&err)
                            );
                        }
                    }
                }
            }
        }
    }
}
