//! Happy Eyeballs (RFC 8305): a name with several addresses is reached by racing them. The
//! first attempt starts at once, each next one when the one before has failed or after
//! [`ATTEMPT_DELAY`] without an answer, with the earlier ones left running; the first
//! connection made wins and the others are dropped. An address that drops the handshake (a
//! firewall, an IPv6 route that goes nowhere) then costs a quarter of a second instead of
//! the kernel's SYN timeout of about two minutes, as curl, Go and Python's asyncio do it.
//! The order alternates the families, starting with the first address's (RFC 8305 §4).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::error::{Error, Op, Result};
use crate::socket::{Address, Family, Socket};

/// How long an attempt has to connect before the next address is tried beside it (RFC
/// 8305's recommended "Connection Attempt Delay").
pub(crate) const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// `addresses` in the order to try them: the first one's family, then the other, in turn,
/// each family's addresses in the order they came (RFC 8305 §4).
fn interleave<T>(addresses: Vec<T>, is_v6: impl Fn(&T) -> bool) -> Vec<T> {
    let Some(first_v6) = addresses.first().map(&is_v6) else {
        return addresses;
    };
    let (mut first, mut second): (Vec<T>, Vec<T>) =
        addresses.into_iter().partition(|a| is_v6(a) == first_v6);
    let mut ordered = Vec::with_capacity(first.len() + second.len());
    first.reverse();
    second.reverse();
    loop {
        match (first.pop(), second.pop()) {
            (None, None) => return ordered,
            (a, b) => ordered.extend(a.into_iter().chain(b)),
        }
    }
}

/// A blocking stream socket connected to the first of `addresses` to answer, raced as the
/// module says. `open` makes each attempt's socket (options set, bound to a source if
/// any); an error it gives as `Op::Bind` is our own end's and ends the race at once.
/// `timeout` bounds each attempt from its start. The socket returned is blocking, with no
/// timeout.
///
/// # Errors
///
/// The error of the attempt that ended last, when none connected.
pub(crate) fn race_blocking(
    addresses: &[Address],
    timeout: Option<Duration>,
    open: impl Fn(&Address) -> Result<Socket>,
) -> Result<Socket> {
    struct Attempt {
        socket: Socket,
        address: Address,
        deadline: Option<Instant>,
    }
    let connected = |socket: Socket| socket.set_timeout(None).map(|()| socket);
    let order = interleave(addresses.to_vec(), |a| a.family() == Family::Inet6);
    let mut waiting = order.iter();
    let mut racing: Vec<Attempt> = Vec::new();
    let mut last: Option<Error> = None;
    let mut next_start = Instant::now();
    let mut more = true;
    loop {
        let now = Instant::now();
        if more && (racing.is_empty() || now >= next_start) {
            let Some(address) = waiting.next() else {
                more = false;
                continue;
            };
            let socket = match open(address) {
                Ok(socket) => socket,
                Err(err) if err.op() == Op::Bind => return Err(err),
                Err(err) => {
                    last = Some(err);
                    continue;
                }
            };
            match socket.start_connect(address) {
                Ok(true) => return connected(socket),
                Ok(false) => {
                    racing.push(Attempt {
                        socket,
                        address: address.clone(),
                        deadline: timeout.map(crate::socket::deadline_in),
                    });
                    next_start = now + ATTEMPT_DELAY;
                }
                Err(err) => last = Some(err),
            }
            continue;
        }
        if racing.is_empty() {
            return Err(last.unwrap_or_else(|| {
                Error::without_target(Op::Connect, io::ErrorKind::NotFound.into())
            }));
        }
        let mut wake = racing.iter().filter_map(|a| a.deadline).min();
        if more {
            wake = Some(wake.map_or(next_start, |w| w.min(next_start)));
        }
        let fds: Vec<_> = racing.iter().map(|a| a.socket.fileno()).collect();
        let ready =
            crate::sys::wait_writable_any(&fds, wake.map(|w| w.saturating_duration_since(now)))
                .map_err(|err| Error::without_target(Op::Connect, err))?;
        // From the highest index down, so that each `swap_remove` moves only an attempt
        // already looked at or not ready.
        for index in ready.into_iter().rev() {
            let attempt = racing.swap_remove(index);
            match attempt.socket.finish_connect(&attempt.address) {
                Ok(()) => return connected(attempt.socket),
                Err(err) => {
                    last = Some(err);
                    // A failure starts the next address at once, not a delay later.
                    next_start = Instant::now();
                }
            }
        }
        let now = Instant::now();
        racing.retain(|attempt| {
            let expired = attempt.deadline.is_some_and(|d| now >= d);
            if expired {
                let err = io::Error::new(io::ErrorKind::TimedOut, "timed out");
                last = Some(Error::new(Op::Connect, &attempt.address, err));
            }
            !expired
        });
    }
}

/// A TCP stream connected to the first of `addresses` to answer, raced as the module says
/// (a single address is simply connected to). Dropping the future drops every attempt.
///
/// # Errors
///
/// The error of the attempt that ended last, when none connected.
pub(crate) async fn race_tcp(addresses: Vec<SocketAddr>) -> io::Result<TcpStream> {
    type Attempt = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;
    if let [only] = addresses.as_slice() {
        return TcpStream::connect(*only).await;
    }
    let mut waiting = interleave(addresses, SocketAddr::is_ipv6).into_iter();
    let mut racing: Vec<Attempt> = Vec::new();
    let mut last = io::Error::from(io::ErrorKind::NotFound);
    let mut more = true;
    let delay = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(delay);
    std::future::poll_fn(move |cx| {
        loop {
            let due = racing.is_empty() || delay.as_mut().poll(cx).is_ready();
            if more && due {
                match waiting.next() {
                    Some(address) => {
                        racing.push(Box::pin(TcpStream::connect(address)));
                        let at = tokio::time::Instant::now() + ATTEMPT_DELAY;
                        delay.as_mut().reset(at);
                    }
                    None => more = false,
                }
                continue;
            }
            let mut index = 0;
            let mut failed = false;
            while index < racing.len() {
                match racing[index].as_mut().poll(cx) {
                    Poll::Ready(Ok(stream)) => return Poll::Ready(Ok(stream)),
                    Poll::Ready(Err(err)) => {
                        last = err;
                        failed = true;
                        drop(racing.swap_remove(index));
                    }
                    Poll::Pending => index += 1,
                }
            }
            if racing.is_empty() && !more {
                return Poll::Ready(Err(std::mem::replace(
                    &mut last,
                    io::ErrorKind::NotFound.into(),
                )));
            }
            if failed && more {
                // A failure starts the next address at once, not a delay later.
                delay.as_mut().reset(tokio::time::Instant::now());
                continue;
            }
            return Poll::Pending;
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socket::Type;

    /// A listener whose accept queue is full (backlog 0, one connection never accepted):
    /// the kernel drops every further SYN, as a firewall that drops does. The filler must
    /// live as long as the address is used.
    fn black_hole() -> (Socket, std::net::TcpStream, SocketAddr) {
        let listener = Socket::new(Family::Inet, Type::Stream).unwrap();
        listener.bind(("127.0.0.1", 0)).unwrap();
        listener.listen(0).unwrap();
        let addr = listener.local_addr().unwrap().as_socket_addr().unwrap();
        let filler = std::net::TcpStream::connect(addr).unwrap();
        (listener, filler, addr)
    }

    fn listening() -> (std::net::TcpListener, SocketAddr) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        (listener, addr)
    }

    fn refused() -> SocketAddr {
        // A port just freed: nothing listens there (the kernel gives it to no one else
        // within the test's few milliseconds but by chance).
        listening().1
    }

    fn open(address: &Address) -> Result<Socket> {
        Socket::new(address.family(), Type::Stream)
    }

    #[test]
    fn an_address_that_drops_the_handshake_costs_the_attempt_delay_not_the_syn_timeout() {
        let (_hole, _filler, dropped) = black_hole();
        let (_server, good) = listening();
        let started = Instant::now();
        let addresses = [Address::from(dropped), Address::from(good)];
        let socket = race_blocking(&addresses, Some(Duration::from_secs(20)), open).unwrap();
        let took = started.elapsed();
        assert_eq!(socket.peer_addr().unwrap().as_socket_addr(), Some(good));
        assert!(
            socket.blocking().unwrap(),
            "the winner is handed back blocking"
        );
        assert!(
            took >= ATTEMPT_DELAY,
            "the second started after the delay: {took:?}"
        );
        assert!(
            took < Duration::from_secs(2),
            "not the SYN's retries: {took:?}"
        );
    }

    #[test]
    fn a_refused_address_starts_the_next_at_once() {
        let (_server, good) = listening();
        let started = Instant::now();
        let addresses = [Address::from(refused()), Address::from(good)];
        let socket = race_blocking(&addresses, None, open).unwrap();
        assert_eq!(socket.peer_addr().unwrap().as_socket_addr(), Some(good));
        assert!(started.elapsed() < ATTEMPT_DELAY, "{:?}", started.elapsed());
    }

    #[test]
    fn when_every_address_fails_the_last_error_is_given() {
        let addresses = [Address::from(refused()), Address::from(refused())];
        let err = race_blocking(&addresses, None, open).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
        let (_hole, _filler, dropped) = black_hole();
        let addresses = [Address::from(dropped), Address::from(refused())];
        let started = Instant::now();
        let err = race_blocking(&addresses, Some(Duration::from_millis(600)), open).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(600) && took < Duration::from_secs(3),
            "{took:?}"
        );
    }

    #[test]
    fn our_own_ends_failure_ends_the_race() {
        let (_server, good) = listening();
        let addresses = [Address::from(good), Address::from(good)];
        let bind_fails = |_: &Address| -> Result<Socket> {
            let err = io::Error::from(io::ErrorKind::AddrInUse);
            Err(Error::new(Op::Bind, "127.0.0.1:1", err))
        };
        let err = race_blocking(&addresses, None, bind_fails).unwrap_err();
        assert_eq!(err.op(), Op::Bind);
    }

    #[tokio::test]
    async fn the_async_race_passes_an_address_that_drops_the_handshake() {
        let (_hole, _filler, dropped) = black_hole();
        let (_server, good) = listening();
        let started = Instant::now();
        let raced = tokio::time::timeout(Duration::from_secs(20), race_tcp(vec![dropped, good]));
        let stream = raced.await.expect("within 20 s").unwrap();
        assert_eq!(stream.peer_addr().unwrap(), good);
        let took = started.elapsed();
        assert!(
            took >= ATTEMPT_DELAY && took < Duration::from_secs(2),
            "{took:?}"
        );
        let started = Instant::now();
        let stream = race_tcp(vec![refused(), good]).await.unwrap();
        assert_eq!(stream.peer_addr().unwrap(), good);
        assert!(started.elapsed() < ATTEMPT_DELAY, "{:?}", started.elapsed());
        let err = race_tcp(vec![refused(), refused()]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    }

    #[test]
    fn families_alternate_from_the_first_addresss() {
        let v = |s: &str| s.parse::<SocketAddr>().unwrap();
        let given = vec![v("[::1]:1"), v("[::2]:1"), v("[::3]:1"), v("127.0.0.1:1")];
        let ordered = interleave(given, SocketAddr::is_ipv6);
        let want = [v("[::1]:1"), v("127.0.0.1:1"), v("[::2]:1"), v("[::3]:1")];
        assert_eq!(ordered, want);
        let given = vec![v("127.0.0.1:1"), v("127.0.0.2:1"), v("[::1]:1")];
        let want = [v("127.0.0.1:1"), v("[::1]:1"), v("127.0.0.2:1")];
        assert_eq!(interleave(given, SocketAddr::is_ipv6), want);
        assert!(interleave(Vec::<SocketAddr>::new(), SocketAddr::is_ipv6).is_empty());
    }
}
