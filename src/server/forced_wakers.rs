//! The connection tasks a forced shutdown has to wake, listed outside the tasks.
//!
//! Every connection task must notice a forced shutdown while its handler waits for bytes,
//! so it must be woken by one. A `Notified` future in each task would do it, at 64 bytes
//! of every idle connection's task (with the flag that it is armed, 72): enough to move
//! tokio's task allocation up a size class. Here a task holds its place in the server's list
//! ([`Enrolled`], 16 bytes), the list holds the task's waker (16 more, from its first poll),
//! and a forced shutdown wakes them all.
//!
//! The list also stands in the drain's count for its tasks: it holds one of the tokens the
//! drain counts (a watcher's receiver, in `shutdown`) while any task is enrolled, so the
//! server's wait for every token to go covers them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;

use slab::Slab;

/// The wakers of a server's connection tasks, woken by a forced shutdown; `T` is what the
/// drain counts.
#[derive(Debug)]
pub(crate) struct ForcedWakers<T> {
    /// Set once, before the wakers are woken; read by every task at each poll.
    forced: AtomicBool,
    enrolled: Mutex<Enrolment<T>>,
}

impl<T> Default for ForcedWakers<T> {
    fn default() -> Self {
        ForcedWakers {
            forced: AtomicBool::new(false),
            enrolled: Mutex::new(Enrolment {
                wakers: Slab::new(),
                unpolled: 0,
                token: None,
            }),
        }
    }
}

#[derive(Debug)]
struct Enrolment<T> {
    /// The wakers of the tasks that have been polled.
    wakers: Slab<Waker>,
    /// Tasks enrolled and not polled yet (so with no waker to keep).
    unpolled: usize,
    /// Held while any task is enrolled: one token counts for all of them in the drain.
    token: Option<T>,
}

impl<T> Enrolment<T> {
    fn len(&self) -> usize {
        self.wakers.len() + self.unpolled
    }
}

/// [`Enrolled::key`] of a task that has not been polled yet (no slab holds that many).
const UNPOLLED: usize = usize::MAX;

/// Slots kept when the list empties; a larger table, left by a burst, is freed.
const KEPT_SLOTS: usize = 1024;

impl<T> ForcedWakers<T> {
    /// Marks the shutdown forced and wakes every enrolled task.
    pub(crate) fn force(&self) {
        // Set before the lock is taken, and a task reads it after leaving its waker under
        // the same lock: so each task either is woken here or sees the flag.
        self.forced.store(true, Ordering::Release);
        for (_, waker) in &self.lock().wakers {
            waker.wake_by_ref();
        }
    }

    /// How many tasks are enrolled.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, Enrolment<T>> {
        // The lock guards plain data that no panic can leave half-changed.
        self.enrolled.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Enrols a task; `token` is the one the drain counted for it, kept if the list was
    /// empty.
    pub(crate) fn enrol(self: &Arc<Self>, token: T) -> Enrolled<T> {
        let mut enrolment = self.lock();
        enrolment.unpolled += 1;
        let spare = if enrolment.token.is_none() {
            enrolment.token = Some(token);
            None
        } else {
            Some(token)
        };
        drop(enrolment);
        // Dropped after the lock, as in `Enrolled::drop`.
        drop(spare);
        Enrolled {
            wakers: Arc::clone(self),
            key: UNPOLLED,
        }
    }
}

/// A connection task's place in its server's [`ForcedWakers`]; leaving it (the drop)
/// counts the task as gone in the drain.
#[derive(Debug)]
pub(crate) struct Enrolled<T> {
    wakers: Arc<ForcedWakers<T>>,
    /// The waker's slot, or [`UNPOLLED`].
    key: usize,
}

impl<T> Enrolled<T> {
    /// Whether the shutdown is forced; the first call also leaves `waker` to be woken by it.
    /// The task's waker is the same at every poll (it is the task's own, for the life of a
    /// spawned task), so the one of the first poll is kept.
    pub(crate) fn is_forced(&mut self, waker: &Waker) -> bool {
        if self.key == UNPOLLED {
            let mut enrolment = self.wakers.lock();
            self.key = enrolment.wakers.insert(waker.clone());
            enrolment.unpolled -= 1;
        }
        self.wakers.forced.load(Ordering::Acquire)
    }
}

impl<T> Drop for Enrolled<T> {
    fn drop(&mut self) {
        let mut enrolment = self.wakers.lock();
        if self.key == UNPOLLED {
            enrolment.unpolled -= 1;
        } else {
            enrolment.wakers.try_remove(self.key);
        }
        let token = if enrolment.len() == 0 {
            if enrolment.wakers.capacity() > KEPT_SLOTS {
                enrolment.wakers = Slab::new();
            }
            enrolment.token.take()
        } else {
            None
        };
        drop(enrolment);
        // Dropped after the lock: whatever the drain runs when it goes runs unlocked.
        drop(token);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    use tokio::sync::watch;

    use super::*;

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn force_wakes_every_armed_task_and_stays_forced() {
        let (tx, rx) = watch::channel(());
        let wakers = Arc::new(ForcedWakers::default());
        let count = Arc::new(Count::default());
        let waker = Waker::from(Arc::clone(&count));
        let mut first = wakers.enrol(rx.clone());
        let mut second = wakers.enrol(rx.clone());
        let mut late = wakers.enrol(rx);
        assert!(!first.is_forced(&waker));
        assert!(!second.is_forced(&waker));
        wakers.force();
        assert_eq!(count.0.load(Ordering::SeqCst), 2, "both armed tasks woken");
        assert!(
            late.is_forced(&waker),
            "a task arming after the force sees it"
        );
        assert!(first.is_forced(&waker));
        assert_eq!(wakers.len(), 3);
        drop((first, second));
        assert_eq!(
            tx.receiver_count(),
            1,
            "the list holds one receiver for all"
        );
        drop(late);
        assert_eq!(wakers.len(), 0);
        assert_eq!(
            tx.receiver_count(),
            0,
            "the last task out lets the drain end"
        );
    }
}
