//! [`Gather`]: the bookkeeping of taking one header off a socket by peeking, without I/O
//! of its own, for the blocking reader (`read.rs`, for `listen`) and the server's async stage
//! alike. Peek into [`Gather::room`]; [`Gather::seen`] parses what is known and names the
//! bytes to take off the socket: while the header is incomplete every byte seen is its, so
//! all of them (the next peek then waits for new ones); once complete, exactly its rest.

use super::{MAX_V1_LEN, MAX_V2_LEN, Parsed, ProxyError, ProxyHeader, parse};

/// What the bytes seen so far make.
#[derive(Debug)]
pub(crate) enum Seen {
    /// The whole header: take the bytes [`Gather::seen`] named, and it is done.
    Complete(ProxyHeader),
    /// Its beginning: take the bytes named, and peek again.
    More,
}

/// One header being gathered: inline room for any v1 header and a v2 one with IPv6
/// addresses and some TLVs (no allocation, and none in the future that holds it); on the
/// heap, up to the longest accepted, only for a v2 header that says it is longer.
#[derive(Debug)]
pub(crate) struct Gather {
    inline: [u8; INLINE],
    heap: Vec<u8>,
    /// Bytes already taken off the socket (all of them the header's).
    taken: usize,
}

const INLINE: usize = 256;

impl Gather {
    pub(crate) fn new() -> Gather {
        Gather {
            inline: [0; INLINE],
            heap: Vec::new(),
            taken: 0,
        }
    }

    /// Where the next peek goes: after the bytes already taken.
    pub(crate) fn room(&mut self) -> &mut [u8] {
        let taken = self.taken;
        &mut self.buf()[taken..]
    }

    /// After a peek of `n` more bytes: what they make, and the bytes to take off the socket
    /// now (to be read into the slice, which has room for exactly them).
    ///
    /// # Errors
    ///
    /// The bytes are not a PROXY header.
    pub(crate) fn seen(&mut self, n: usize) -> Result<(Seen, &mut [u8]), ProxyError> {
        let (taken, known) = (self.taken, self.taken + n);
        match parse(&self.buf()[..known])? {
            Parsed::Complete { header, len } => {
                self.taken = len;
                Ok((Seen::Complete(header), &mut self.buf()[taken..len]))
            }
            Parsed::Incomplete => {
                self.taken = known;
                if known == self.buf().len() {
                    self.grow();
                }
                Ok((Seen::More, &mut self.buf()[taken..known]))
            }
        }
    }

    fn buf(&mut self) -> &mut [u8] {
        if self.heap.is_empty() {
            &mut self.inline
        } else {
            &mut self.heap
        }
    }

    /// Doubles the room, up to [`MAX_V2_LEN`] (the parser refuses longer headers before
    /// the room runs out).
    fn grow(&mut self) {
        let len = self.buf().len();
        let mut bigger = vec![0; (len * 2).clamp(MAX_V1_LEN, MAX_V2_LEN)];
        bigger[..len].copy_from_slice(self.buf());
        self.heap = bigger;
    }
}
