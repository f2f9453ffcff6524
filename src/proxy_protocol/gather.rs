//! [`Gather`]: the bookkeeping of taking one header off a socket by peeking, without I/O
//! of its own, for the blocking reader (`read.rs`, for `listen`) and the server's async stage
//! alike. Peek into [`Gather::room`]; [`Gather::seen`] parses what is known and names the
//! bytes to take off the socket: while the header is incomplete every byte seen is its, so
//! all of them (the next peek then waits for new ones); once complete, exactly its rest.
//! The io_uring engine receives instead of peeking ([`Gather::received`]): what came after
//! the header is then handed to the service from the gather's room.

use super::{MAX_V1_LEN, MAX_V2_LEN, Parsed, ProxyError, ProxyHeader, parse};

/// What the bytes seen so far make.
#[derive(Debug)]
pub(crate) enum Seen {
    /// The whole header: take the bytes [`Gather::seen`] named, and it is done.
    Complete(ProxyHeader),
    /// Its beginning: take the bytes named, and peek again.
    More,
}

/// A header taken by receiving ([`Gather::received`]).
#[derive(Debug)]
pub(crate) struct Received<'a> {
    pub(crate) header: ProxyHeader,
    /// The header's length in bytes.
    pub(crate) len: usize,
    /// What came after it in the same receive: the service's first bytes.
    pub(crate) after: &'a [u8],
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

    /// After a receive (not a peek) of `n` more bytes into [`Gather::room`]: once the
    /// header is complete, the header, its length and the bytes that came after it in the
    /// same receive (the service's); `None` while it is incomplete (receive into the room
    /// again).
    ///
    /// # Errors
    ///
    /// The bytes are not a PROXY header.
    pub(crate) fn received(&mut self, n: usize) -> Result<Option<Received<'_>>, ProxyError> {
        let known = self.taken + n;
        match self.seen(n)? {
            (Seen::Complete(header), _) => {
                let len = self.taken;
                Ok(Some(Received {
                    header,
                    len,
                    after: &self.buf()[len..known],
                }))
            }
            (Seen::More, _) => Ok(None),
        }
    }

    /// The bytes taken so far: once [`Gather::seen`] said `Complete`, the whole header.
    pub(crate) fn taken(&mut self) -> &[u8] {
        let taken = self.taken;
        &self.buf()[..taken]
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::{encode_v1, encode_v2};
    use super::*;

    /// Feeds `stream` to a gather in receives of the sizes in `cuts` (cycled; each at most
    /// the room), as the io_uring engine does: the header, its length and what came after
    /// it in the receive that completed it.
    fn receive_in(stream: &[u8], cuts: &[usize]) -> (ProxyHeader, usize, Vec<u8>) {
        let mut gather = Gather::new();
        let mut at = 0;
        for cut in cuts.iter().cycle() {
            let room = gather.room();
            let n = (*cut).clamp(1, room.len()).min(stream.len() - at);
            room[..n].copy_from_slice(&stream[at..at + n]);
            at += n;
            if let Some(got) = gather.received(n).expect("a valid header") {
                return (got.header, got.len, got.after.to_vec());
            }
        }
        unreachable!("cycle() never ends")
    }

    proptest! {
        #[test]
        fn a_received_header_leaves_the_rest_of_its_receive_to_the_service(
            v2 in any::<bool>(),
            tlvs in 0usize..900,
            rest in proptest::collection::vec(any::<u8>(), 0..64),
            cuts in proptest::collection::vec(1usize..300, 1..8),
        ) {
            let source = "192.0.2.9:5000".parse().expect("an address");
            let destination = "192.0.2.1:80".parse().expect("an address");
            let mut header = if v2 {
                let mut header = encode_v2(source, destination);
                let body = u16::from_be_bytes([header[14], header[15]]) + 3 + tlvs as u16;
                header[14..16].copy_from_slice(&body.to_be_bytes());
                header.extend_from_slice(&[0xEE]);
                header.extend_from_slice(&(tlvs as u16).to_be_bytes());
                header.extend(std::iter::repeat_n(7, tlvs));
                header
            } else {
                encode_v1(source, destination)
            };
            let len = header.len();
            header.extend_from_slice(&rest);
            let (got, got_len, after) = receive_in(&header, &cuts);
            prop_assert_eq!(got, ProxyHeader::Proxied { source, destination });
            prop_assert_eq!(got_len, len);
            // The receive that completed the header held the start of the rest, no more.
            prop_assert!(rest.starts_with(&after), "{:?} {:?}", after, rest);
        }
    }
}
