//! Name lookups for async callers: getaddrinfo(3) on a blocking thread, and one at a time
//! per name. A caller that asks for a name already being looked up waits for that lookup
//! instead of starting its own, so that a slow resolver and many clients asking for one
//! name (a relay's target, a popular SOCKS destination) hold one thread, not one each: a
//! lookup cannot be cancelled, and one per client filled tokio's blocking pool (512
//! threads) until no name resolved for anyone. A caller that stops waiting (its timeout)
//! leaves the lookup to finish for the others. Answers are not kept: the next caller after
//! one ends asks the resolver again (which caches, or not, as configured).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use tokio::sync::watch;

use super::no_thread;

/// What a lookup found: the addresses (port 0), or its error's kind and words (the error
/// itself cannot be shared).
type Found = Result<Arc<[SocketAddr]>, (io::ErrorKind, String)>;

/// The lookups under way, by name: each one's answer, once there is one.
type InFlight = Mutex<HashMap<String, watch::Receiver<Option<Found>>>>;

static IN_FLIGHT: LazyLock<InFlight> = LazyLock::new(InFlight::default);

/// The addresses of `name`, with `port`, resolved without blocking the runtime (and with
/// the callers that ask for `name` meanwhile); a name that does not resolve fails in
/// `connect`'s words (`cannot resolve NAME: name or service not known`), which a relay's
/// warning then carries.
pub(crate) async fn lookup(name: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let mut answer = under_way(name)?;
    let found = answer
        .wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|found| found.clone());
    match found {
        Some(Ok(addresses)) => Ok(addresses
            .iter()
            .map(|address| {
                let mut address = *address;
                address.set_port(port);
                address
            })
            .collect()),
        Some(Err((kind, words))) => Err(io::Error::new(kind, words)),
        // The lookup's thread ended without an answer: it panicked.
        None => Err(io::Error::other(format!(
            "cannot resolve {name}: the lookup failed"
        ))),
    }
}

/// The answer to come of the lookup of `name` under way, started now if there is none.
fn under_way(name: &str) -> io::Result<watch::Receiver<Option<Found>>> {
    let (tell, answer) = {
        let mut in_flight = IN_FLIGHT.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(answer) = in_flight.get(name) {
            return Ok(answer.clone());
        }
        let (tell, answer) = watch::channel(None);
        in_flight.insert(name.to_owned(), answer.clone());
        (tell, answer)
    };
    // Started with the table unlocked: a pool that cannot take the work (no thread, or
    // shutting down) drops it here, on this thread, and `Forget` then takes the lock.
    let forget = Forget {
        name: name.to_owned(),
        answer: answer.clone(),
    };
    // The panic of `spawn_blocking` when no thread can be started is caught (see
    // `on_blocking_pool`); the program's panic hook hears of it all the same.
    let spawned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        tokio::task::spawn_blocking(move || {
            let found = resolve(&forget.name);
            // Forgotten first: whoever asks from now on asks the resolver again.
            drop(forget);
            let _ = tell.send(Some(found));
        })
    }));
    match spawned {
        Ok(_) => Ok(answer),
        Err(_) => {
            // tokio keeps the work and runs it once it has a thread; until then, callers
            // get no thread now rather than wait on it.
            forget_lookup(name, &answer);
            Err(no_thread())
        }
    }
}

/// Removes the lookup of `name` whose answer is `answer` from those under way, if it is
/// still there (the name's entry may be a later lookup's).
fn forget_lookup(name: &str, answer: &watch::Receiver<Option<Found>>) {
    let mut in_flight = IN_FLIGHT.lock().unwrap_or_else(PoisonError::into_inner);
    if in_flight
        .get(name)
        .is_some_and(|under_way| under_way.same_channel(answer))
    {
        in_flight.remove(name);
    }
}

/// getaddrinfo(3) for `name`, in `connect`'s words when it fails.
fn resolve(name: &str) -> Found {
    match std::net::ToSocketAddrs::to_socket_addrs(&(name, 0)) {
        Ok(found) => Ok(found.collect()),
        Err(err) => {
            let err = crate::socket::unresolved(name, err);
            Err((err.kind(), err.to_string()))
        }
    }
}

/// Removes its lookup from those under way when dropped: when the lookup has its answer,
/// or its thread has panicked (or never started), so that the name is not left waiting on
/// an answer that will not come. Only its own lookup: the name's entry may be a later one.
struct Forget {
    name: String,
    answer: watch::Receiver<Option<Found>>,
}

impl Drop for Forget {
    fn drop(&mut self) {
        forget_lookup(&self.name, &self.answer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A runtime shutting down drops the lookup's work where it is asked to start it; the
    /// table must not be locked then (it was: the thread deadlocked on itself, and every
    /// later lookup of the process hung behind it).
    #[test]
    fn a_lookup_a_closed_pool_refuses_is_forgotten_at_once() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let handle = runtime.handle().clone();
        runtime.shutdown_background();
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _inside = handle.enter();
            let answer = under_way("refused.example");
            let _ = done.send(answer.map(|answer| answer.has_changed().is_err()));
        });
        let closed = finished
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("under_way returned (no deadlock)");
        assert!(
            closed.unwrap_or(true),
            "the answer's sender is gone with the work"
        );
        let in_flight = IN_FLIGHT.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(!in_flight.contains_key("refused.example"));
    }

    #[tokio::test]
    async fn a_name_resolves_with_the_port_asked_for() {
        let found = lookup("localhost", 8080).await.expect("localhost resolves");
        assert!(!found.is_empty());
        assert!(found.iter().all(|address| address.port() == 8080));
        assert!(found.iter().all(|address| address.ip().is_loopback()));
    }
}
