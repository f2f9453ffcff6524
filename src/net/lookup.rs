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
    let mut in_flight = IN_FLIGHT.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(answer) = in_flight.get(name) {
        return Ok(answer.clone());
    }
    let (tell, answer) = watch::channel(None);
    let forget = Forget(name.to_owned());
    // The panic of `spawn_blocking` when no thread can be started is caught (see
    // `on_blocking_pool`); the program's panic hook hears of it all the same.
    let spawned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        tokio::task::spawn_blocking(move || {
            let found = resolve(&forget.0);
            // Forgotten first: whoever asks from now on asks the resolver again.
            drop(forget);
            let _ = tell.send(Some(found));
        })
    }));
    if spawned.is_err() {
        return Err(no_thread());
    }
    in_flight.insert(name.to_owned(), answer.clone());
    Ok(answer)
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

/// Removes its name from the lookups under way when dropped: when the lookup has its
/// answer, or its thread has panicked (or never started), so that the name is not left
/// waiting on an answer that will not come.
struct Forget(String);

impl Drop for Forget {
    fn drop(&mut self) {
        IN_FLIGHT
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_name_resolves_with_the_port_asked_for() {
        let found = lookup("localhost", 8080).await.expect("localhost resolves");
        assert!(!found.is_empty());
        assert!(found.iter().all(|address| address.port() == 8080));
        assert!(found.iter().all(|address| address.ip().is_loopback()));
    }
}
