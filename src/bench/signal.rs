//! How a run's workers wait: the one-way flag that ends a run ([`Signal`]) and the pause
//! before a worker retries a failed setup, which the flag cuts short ([`pause`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

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
