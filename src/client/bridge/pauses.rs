//! How a bridge's sender tells its input's pauses, and a peer that stopped taking input,
//! from a stop of the program itself: the next chunk to send and when a quiet input counts
//! as paused ([`next_to_send`], [`InputPauses`]), and the peer's progress as its kernel
//! counts it ([`Acknowledged`]).

use std::os::fd::{BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{LINGER, POLL};
use crate::client::input::{Input, Next};
use crate::net;

/// How much a peer must take between two looks, and have room for, to count as reading
/// (see [`Acknowledged::moved`]).
const TAKEN: u64 = 64 * 1024;

/// What the peer's kernel has acknowledged of a TCP connection's bytes, looked at now and
/// then: whether the peer took any since the last look. The kernel counts on while this
/// program does not run (stopped with ^Z or `SIGSTOP`, paused in a VM, descheduled): a
/// sender whose `send` has not come back since is not blocked on a peer that stopped
/// reading, though no progress of its own was seen for a while (an outside audit: a 1.5 s
/// stop made a transfer to a peer that read all along end with a reset and exit 1).
///
/// It excuses a sender that looks stuck when the wait before the look overslept (the
/// program did not run), or once in a row when the peer took data: a receiver whose
/// program stopped reading may still take data in bursts as its kernel makes room (the
/// suite under load saw one outlast 30 s when every burst excused it).
#[derive(Debug)]
pub(crate) struct Acknowledged {
    fd: RawFd,
    last: Option<u64>,
    /// The last look was excused by what the peer took.
    excused_by_taking: bool,
}

impl Acknowledged {
    /// Begins counting on the connection `fd` (of a socket that outlives this).
    pub(crate) fn new(fd: RawFd) -> Acknowledged {
        Acknowledged {
            fd,
            last: Acknowledged::count(fd),
            excused_by_taking: false,
        }
    }

    /// Whether a sender that looks stuck at the end of a wait for `wait`, begun at `asked`,
    /// is excused: the wait overslept, or the peer took data since the last look (once in
    /// a row).
    pub(crate) fn excuses(&mut self, asked: Instant, wait: Duration) -> bool {
        let overslept = asked.elapsed() > wait + net::OVERSLEPT;
        let by_taking = self.moved() && !self.excused_by_taking;
        self.excused_by_taking = by_taking;
        overslept || by_taking
    }

    /// Whether the peer's kernel acknowledged [`TAKEN`] bytes or more since the last look,
    /// and still has that much room (its advertised window, where the system tells it): a
    /// receiver whose program stopped reading may still take a trickle as its kernel
    /// compacts what it holds (the suite under load saw one outlast 30 s), which is no
    /// reading. No where the system cannot tell (a Unix socket, `TCP_INFO` without the
    /// count).
    fn moved(&mut self) -> bool {
        let now = Acknowledged::count(self.fd);
        let taken = matches!((self.last, now), (Some(before), Some(now)) if now >= before + TAKEN);
        self.last = now;
        // SAFETY: as in `count`.
        let window = net::tcp_send_window(unsafe { BorrowedFd::borrow_raw(self.fd) });
        taken && window.map_or(true, |room| room >= TAKEN)
    }

    fn count(fd: RawFd) -> Option<u64> {
        // SAFETY: the caller's socket is open for as long as this lives (see `new`).
        net::tcp_bytes_acked(unsafe { BorrowedFd::borrow_raw(fd) }).ok()
    }
}

/// The next chunk a connection's sender takes from `input`, waiting up to [`POLL`] — once
/// the bridge is `done`, only until its input counts as paused (`pauses`), so that a quiet
/// input ends the sending then and not at the end of a poll. With a shared input
/// (`shared`: the connection's socket), `None` once the connection is over — the bridge is
/// `done`, or the peer has closed, even before the receiving side has read its end — and a
/// chunk taken then is handed back: sent to that peer it would be lost, and it is the next
/// connection's. Once `done`, a shared input's sender waits for nothing.
pub(crate) fn next_to_send(
    input: &Input,
    done: &AtomicBool,
    shared: Option<RawFd>,
    pauses: &mut InputPauses,
) -> Option<Next> {
    pauses.back();
    let over = || done.load(Ordering::Relaxed);
    let wait = match (shared.is_some(), over()) {
        (true, true) => Duration::ZERO,
        // Paused already, and still sending (see `waits_for_input`): asked again each poll.
        (false, true) => match pauses.left() {
            left if left.is_zero() => POLL,
            left => left.min(POLL),
        },
        (_, false) => POLL,
    };
    let next = input.next(wait);
    pauses.looked(wait);
    match next {
        Next::Data(buf) if shared.is_some_and(|fd| over() || net::peer_has_closed(fd)) => {
            input.put_back(buf);
            None
        }
        next => Some(next),
    }
}

/// How long a sender that has had no input yet waits for some once its peer has closed,
/// counted from the start of the bridge: input on its way as the connection opened (written
/// to the pipe a moment before) still goes to a peer that half-closed after its request.
pub(crate) const FIRST_INPUT: Duration = Duration::from_millis(50);

/// When a sender last had input (or began, having had none): whether its input has
/// paused, for a sender whose peer has closed. A peer that half-closed may still read:
/// input that keeps coming — a producer writing in bursts, `(…; sleep 0.5; …) | connect` —
/// is sent while each pause is under [`LINGER`], and the bridge ends when the input does;
/// an open stdin that has been quiet that long, or has given nothing in the bridge's first
/// [`FIRST_INPUT`] (a terminal after a greeting), ends the bridge at once, as the peer
/// closing should — unless [`waits_for_input`](super::waits_for_input) says the rest may
/// still be wanted.
///
/// Only time the sender spent looking for input counts: a look that came back late, or
/// that came late after the one before (the program stopped — ^Z, `SIGSTOP`, a paused VM
/// — or starved, or busy sending to a slow peer), starts the pause again, for what was
/// written meanwhile may not have reached the sender yet (an outside audit: a 1.5 s stop
/// as the peer half-closed lost all the lines written during it, exit 0).
#[derive(Debug, Clone, Copy)]
pub(crate) struct InputPauses {
    began: Instant,
    last: Option<Instant>,
    /// When the look for input under way began, or the last one ended.
    looked: Instant,
}

/// How far a look for input may come late (after the one before, or past its wait) before
/// the time away is taken for the program's, not the input's.
const AWAY: Duration = Duration::from_millis(250);

impl InputPauses {
    /// A sender that begins now, with no input yet.
    pub(crate) fn begin() -> InputPauses {
        let now = Instant::now();
        InputPauses {
            began: now,
            last: None,
            looked: now,
        }
    }

    /// A look for input begins: after a long time away, the pause begins again.
    fn back(&mut self) {
        if self.looked.elapsed() > AWAY {
            self.again();
        }
        self.looked = Instant::now();
    }

    /// A look for input that was to wait at most `wait` has ended: one that ended well past
    /// that was not the program's to count (it was stopped), and the pause begins again.
    fn looked(&mut self, wait: Duration) {
        if self.looked.elapsed() > wait + AWAY {
            self.again();
        }
        self.looked = Instant::now();
    }

    /// The pause so far is not counted: it begins now.
    fn again(&mut self) {
        let now = Instant::now();
        match self.last {
            Some(_) => self.last = Some(now),
            None => self.began = now,
        }
    }

    /// Input came now.
    pub(crate) fn had_input(&mut self) {
        self.last = Some(Instant::now());
    }

    /// Whether no input has come yet.
    pub(crate) fn none_yet(&self) -> bool {
        self.last.is_none()
    }

    /// How long until the input counts as paused; zero once it does.
    fn left(&self) -> Duration {
        match self.last {
            None => FIRST_INPUT.saturating_sub(self.began.elapsed()),
            Some(last) => LINGER.saturating_sub(last.elapsed()),
        }
    }

    /// Whether `input` has paused: quiet for the time, and nothing on its way
    /// ([`Input::waiting`]: the time alone counts a stop of the whole program as a pause).
    pub(crate) fn paused(&self, input: &Input) -> bool {
        self.left().is_zero() && !input.waiting()
    }
}
