//! Standard error that never holds the server up. Lines are queued and written by a thread
//! of their own, so that a log reader that stops reading (a paused collector, a pipe nobody
//! drains) stalls that thread only: the threads that accept and serve connections, and the
//! shutdown, go on. Log events that find the queue full are dropped and counted, and the
//! count is written once the reader catches up; the lines a user must see (the readiness
//! lines, notices, the `error:` line) are always queued. Where no thread can be started (a
//! thread limit), every line is written at once, as it is before [`start`].

use std::io::{self, Write};
use std::os::fd::AsFd;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use socketkit::client::WaitingFile;

/// How much text may wait for a slow reader before log events are dropped: at `-v`, about
/// two thousand connections' lines, and a bounded cost if nobody ever reads them.
const QUEUE_LIMIT: usize = 256 * 1024;

/// The most a write to a pipe may hold and still reach the reader whole (POSIX `PIPE_BUF`
/// on Linux): the text is written in pieces of whole lines up to this size, so that the
/// lines of another process on the same stderr (the process a restart replaces, still
/// draining) never land in the middle of one of ours.
const WHOLE_WRITE: usize = 4096;

/// How long the process waits at exit for its queued lines to be written: long enough for
/// any reader that reads at all, bounded for one that never will.
pub(crate) const EXIT_FLUSH: Duration = Duration::from_secs(1);

static QUEUE: OnceLock<Queue> = OnceLock::new();

/// What a line is, which decides whether a full queue may drop it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Line {
    /// A log event: dropped (and counted) when the queue is full.
    Event,
    /// A readiness line, a notice or an error: always queued.
    Notice,
}

struct Queue {
    state: Mutex<State>,
    /// Rung when text is queued while the writer waits for some.
    queued: Condvar,
    /// Rung when the writer has written everything it was given.
    emptied: Condvar,
    /// The line that says how many events were dropped, in the log's format.
    dropped_line: fn(u64) -> String,
}

#[derive(Default)]
struct State {
    pending: Vec<u8>,
    /// Events dropped since the writer last took the queue.
    dropped: u64,
    /// The writer thread runs: else lines are written by whoever has one.
    threaded: bool,
    /// The writer waits for text (so a line queued must wake it).
    waiting: bool,
    /// The writer is writing what it took.
    writing: bool,
    /// Batches the writer has finished: how [`flush_in_order`] tells a writer that moves.
    batches: u64,
    /// The batch count when a [`flush_in_order`] last waited in vain (the reader stuck).
    stalled_at: Option<u64>,
    /// The last write failed (a full disk): the writer waits for new lines before it tries
    /// again, rather than retry its count of dropped lines at once, for ever.
    failed: bool,
    /// The last write failed part way through a line: the next starts on a line of its own.
    cut: bool,
}

/// Starts the writer thread; `dropped_line` words the count of dropped events. Lines
/// written before, or if no thread can be started, are written at once.
pub(crate) fn start(dropped_line: fn(u64) -> String) {
    let queue = QUEUE.get_or_init(|| Queue {
        state: Mutex::new(State::default()),
        queued: Condvar::new(),
        emptied: Condvar::new(),
        dropped_line,
    });
    let mut state = lock(&queue.state);
    if state.threaded {
        return;
    }
    let started = std::thread::Builder::new()
        .name("socketkit-log".to_owned())
        .spawn(move || queue.write_forever());
    // Refused (a thread limit), lines go out at once, as they did before `start`.
    state.threaded = started.is_ok();
}

/// Writes `text` (whole lines) to stderr, through the queue once [`start`] has run.
pub(crate) fn write(text: &[u8], line: Line) {
    // Without the writer thread there is nobody to tell what a failed write left out.
    let Some(queue) = QUEUE.get() else {
        write_lines(text);
        return;
    };
    let mut state = lock(&queue.state);
    if !state.threaded {
        drop(state);
        write_lines(text);
        return;
    }
    if line == Line::Event && state.pending.len() + text.len() > QUEUE_LIMIT {
        state.dropped += 1;
        return;
    }
    state.pending.extend_from_slice(text);
    // Only when the writer waits: a condition variable's ring is a system call each time.
    if state.waiting {
        state.waiting = false;
        queue.queued.notify_one();
    }
}

/// Waits up to `within` for the queued lines to be written: before the process exits, so
/// that its last lines (the `error:` line among them) are not lost with it.
pub(crate) fn flush(within: Duration) {
    let Some(queue) = QUEUE.get() else {
        return;
    };
    drop(queue.wait_written(lock(&queue.state), within));
}

/// Waits up to `within` for the queued lines, so that they come before what follows on the
/// same terminal (the peer's first byte after `connection from`). Once such a wait has run
/// out, the next ones do not wait until the writer has written something since: a reader
/// that stopped would otherwise hold up every connection by `within`.
pub(crate) fn flush_in_order(within: Duration) {
    let Some(queue) = QUEUE.get() else {
        return;
    };
    let state = lock(&queue.state);
    if state.stalled_at == Some(state.batches) {
        return;
    }
    let mut state = queue.wait_written(state, within);
    if state.threaded && state.has_work() {
        state.stalled_at = Some(state.batches);
    }
}

impl State {
    /// Whether the writer has lines to write (the count of dropped ones among them, unless
    /// the last write failed).
    fn has_work(&self) -> bool {
        self.writing || !self.pending.is_empty() || (self.dropped > 0 && !self.failed)
    }
}

impl Queue {
    /// Waits up to `within` until the writer has nothing left to write; the state as it
    /// was then.
    fn wait_written<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        within: Duration,
    ) -> MutexGuard<'a, State> {
        let deadline = Instant::now() + within;
        while state.threaded && state.has_work() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = match self.emptied.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        state
    }

    /// The writer thread: takes whatever is queued and writes it, for as long as the
    /// process lives.
    fn write_forever(&self) {
        let mut taken = Vec::new();
        loop {
            let mut state = lock(&self.state);
            if state.writing {
                state.batches += 1;
            }
            state.writing = false;
            if taken.capacity() > 0 && state.pending.is_empty() {
                // Kept for the next lines: most runs log little, and at `-v` steadily.
                taken.clear();
                std::mem::swap(&mut state.pending, &mut taken);
            }
            self.emptied.notify_all();
            while state.pending.is_empty() && (state.dropped == 0 || state.failed) {
                state.waiting = true;
                state = match self.queued.wait(state) {
                    Ok(state) => state,
                    Err(poisoned) => poisoned.into_inner(),
                };
            }
            state.waiting = false;
            state.writing = true;
            taken = std::mem::take(&mut state.pending);
            let dropped = std::mem::take(&mut state.dropped);
            let cut = std::mem::take(&mut state.cut);
            drop(state);
            if dropped > 0 {
                taken.extend_from_slice((self.dropped_line)(dropped).as_bytes());
            }
            // A line a failed write cut is ended first, so that this batch does not run on
            // from it; until that line end is out, nothing else goes.
            let unwritten = match !cut || write_lines(b"\n").lines == 0 {
                true => write_lines(&taken),
                false => Unwritten {
                    lines: count_lines(&taken),
                    cut: true,
                },
            };
            let mut state = lock(&self.state);
            // What a failure kept from the reader is counted with the events dropped, and
            // said once a write succeeds again. The count's own line is the batch's last:
            // when it was not written, it stood for `dropped` lines, not one.
            let lost = match unwritten.lines {
                0 => 0,
                lines if dropped > 0 => lines - 1 + dropped,
                lines => lines,
            };
            state.dropped += lost;
            state.failed = lost > 0;
            state.cut = unwritten.cut;
        }
    }
}

/// Takes the lock whatever a panicking holder left: the state is a queue of bytes, whole
/// at every point a holder could panic (none of its code does).
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a write to stderr could not write.
#[derive(Default)]
struct Unwritten {
    /// Lines not written, or written in part.
    lines: u64,
    /// The last line written was cut part way.
    cut: bool,
}

/// How many lines `text` holds (line ends).
fn count_lines(text: &[u8]) -> u64 {
    text.iter().filter(|&&b| b == b'\n').count() as u64
}

/// The duplicate of descriptor 2 that [`write_to_stderr`] writes through, made now if it
/// can be and was not yet.
fn stderr_duplicate() -> Option<&'static Mutex<WaitingFile>> {
    static STDERR: OnceLock<Mutex<WaitingFile>> = OnceLock::new();
    match STDERR.get() {
        Some(file) => Some(file),
        None => {
            io::stderr().as_fd().try_clone_to_owned().ok().map(|fd| {
                STDERR.get_or_init(|| Mutex::new(WaitingFile::new(std::fs::File::from(fd))))
            })
        }
    }
}

/// Makes the duplicate stderr is written through at start, for a server: made at its first
/// line, the readiness line, it took a descriptor after the server had checked that one was
/// left for a connection (at the limit, a server ready and deaf).
pub(crate) fn open_early() {
    let _ = stderr_duplicate();
}

/// Writes `piece` to stderr through a duplicate of descriptor 2 that waits when stderr is a
/// non-blocking pipe that is full (a parent's, left non-blocking), rather than drop lines
/// with `EAGAIN`. The duplicate is made at the first write that can make it: where the
/// descriptor table is full then, that write goes to descriptor 2 itself, and the next
/// tries again (made once and for all, a full table at the first line lost every line).
fn write_to_stderr(piece: &[u8]) -> io::Result<usize> {
    match stderr_duplicate() {
        Some(file) => file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .write(piece),
        None => io::stderr().lock().write(piece),
    }
}

/// Writes `text` in pieces of whole lines of at most [`WHOLE_WRITE`] bytes each (a longer
/// line goes alone). If stderr fails (it is gone, a full disk), the rest is not written:
/// what that left out comes back.
fn write_lines(mut text: &[u8]) -> Unwritten {
    while !text.is_empty() {
        let (piece, rest) = text.split_at(piece_end(text));
        let mut left = piece;
        while !left.is_empty() {
            match write_to_stderr(left) {
                Ok(n) if n > 0 => left = &left[n..],
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                // Nothing more goes: from the line that was being written on.
                _ => {
                    let written = piece.len() - left.len();
                    let line_start = piece[..written]
                        .iter()
                        .rposition(|&b| b == b'\n')
                        .map_or(0, |newline| newline + 1);
                    return Unwritten {
                        lines: count_lines(&text[line_start..]),
                        cut: written > line_start,
                    };
                }
            }
        }
        text = rest;
    }
    Unwritten::default()
}

/// Where the first piece of `text` to write ends: after the last line end within
/// [`WHOLE_WRITE`] bytes, or after the first line if that one is longer.
fn piece_end(text: &[u8]) -> usize {
    if text.len() <= WHOLE_WRITE {
        return text.len();
    }
    let after = |newline: usize| newline + 1;
    match text[..WHOLE_WRITE].iter().rposition(|&b| b == b'\n') {
        Some(newline) => after(newline),
        None => text
            .iter()
            .position(|&b| b == b'\n')
            .map_or(text.len(), after),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_end_at_line_ends_within_a_whole_write() {
        let line = |n: usize| format!("{}\n", "x".repeat(n - 1)).into_bytes();
        let mut text = Vec::new();
        for _ in 0..3 {
            text.extend(line(1500));
        }
        text.extend(line(5000));
        text.extend(line(10));
        let pieces = pieces(&text);
        assert_eq!(pieces, vec![3000, 1500, 5000, 10]);
    }

    /// The sizes `write_lines` would write `text` in.
    fn pieces(mut text: &[u8]) -> Vec<usize> {
        let mut sizes = Vec::new();
        while !text.is_empty() {
            let end = piece_end(text);
            sizes.push(end);
            text = &text[end..];
        }
        sizes
    }
}
