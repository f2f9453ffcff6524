//! Work that blocks (a name lookup, reading a reload's files), run off the runtime's
//! threads on tokio's blocking pool — without its panic when the pool needs a thread and
//! the system gives none (a container at its `pids.max`): tokio's `spawn_blocking` panics
//! then, which killed the task that asked (the SIGHUP loop, for good) and printed a panic
//! for every client of a relay. Here it is an error the caller handles.

use std::io;

/// Runs `work` on tokio's blocking pool and waits for it: its result, or an error when no
/// thread could be started for it (`WouldBlock`, as `EAGAIN` from the system) or it panicked.
pub(crate) async fn on_blocking_pool<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> io::Result<T> {
    // The panic is caught; the program's panic hook is told of it all the same, and may
    // leave it unsaid (see `crate::error::NO_THREAD_PANIC`).
    let spawned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        tokio::task::spawn_blocking(work)
    }));
    match spawned {
        Ok(job) => job.await.map_err(io::Error::other),
        Err(_) => Err(no_thread()),
    }
}

/// The error for work that found no thread to run on.
pub(crate) fn no_thread() -> io::Error {
    io::Error::new(
        io::ErrorKind::WouldBlock,
        "no thread could be started for it (the process or its group is at its limit of threads)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_off_the_runtime_and_returns_its_result() {
        let here = std::thread::current().id();
        let there = on_blocking_pool(|| std::thread::current().id())
            .await
            .expect("a thread");
        assert_ne!(here, there);
    }
}
