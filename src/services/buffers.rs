//! Per-thread spare read buffers for the streaming services (echo, discard): a connection
//! holds a buffer only while it has bytes to move, and gives it back when it goes quiet, so
//! ten thousand idle connections hold no buffer at all, and a busy one does not pay an
//! allocation per burst.

use std::cell::RefCell;

/// The size of each buffer.
pub(crate) const SIZE: usize = 16 * 1024;

/// Spare buffers kept per thread; more than this are freed.
const KEPT: usize = 64;

thread_local! {
    static SPARE: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of [`SIZE`] bytes, from this thread's spares if there is one.
pub(crate) fn take() -> Box<[u8]> {
    SPARE
        .with(|spare| spare.borrow_mut().pop())
        .unwrap_or_else(|| vec![0u8; SIZE].into_boxed_slice())
}

/// Gives a buffer back for reuse (to whichever thread runs the caller now).
pub(crate) fn give(buf: Box<[u8]>) {
    SPARE.with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < KEPT {
            spare.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_bounded() {
        let first = take();
        let address = first.as_ptr();
        give(first);
        let again = take();
        assert_eq!(
            again.as_ptr(),
            address,
            "a given-back buffer is the next one taken"
        );
        give(again);
        let many: Vec<_> = (0..KEPT + 10).map(|_| take()).collect();
        many.into_iter().for_each(give);
        SPARE.with(|spare| assert_eq!(spare.borrow().len(), KEPT));
    }
}
