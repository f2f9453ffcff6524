//! Echo's way out when the worker's provided buffers run out: the bytes queued on
//! connections are copied to memory of their own, and the buffers go back to the kernel.
//!
//! A queued buffer stays taken until its send completes, and a send to a client that does
//! not read never completes: sixteen such clients would hold a worker's 64 buffers, and no
//! other connection could receive (seen: 40 clients that wrote and never read left every
//! other echo client of the server unanswered). So when a receive finds no buffer, the
//! worker moves what every connection has queued into a [`Spill`] — at once where no send
//! is in flight, after cancelling the send where one is (its completion says how much of
//! the buffer went) — and those connections send from the spill before their queue. A
//! connection counts its spill's chunks among the buffers it may hold ([`HELD_MAX`]), so a
//! client that does not read holds at most that much of the process's memory, and none of
//! the buffers the others need. Nothing of this runs while the buffers suffice, and the
//! spills are kept in a table of the worker's, by slot, so that no connection's slot grows
//! for what few ever need.
//!
//! [`HELD_MAX`]: super::stream::HELD_MAX

use std::collections::VecDeque;

use io_uring::opcode;

use super::{CANCEL, SEND, Worker, token};

/// Bytes a connection had queued in provided buffers, copied out, oldest first.
#[derive(Debug, Default)]
pub(super) struct Spill {
    /// Each chunk is one buffer's bytes: boxed, so that adding chunks never moves the one a
    /// send in flight points at.
    chunks: VecDeque<Box<[u8]>>,
    /// Bytes of the oldest chunk already sent.
    offset: usize,
}

impl Spill {
    /// How many chunks it holds.
    pub(super) fn len(&self) -> usize {
        self.chunks.len()
    }

    /// The bytes to send next: the rest of the oldest chunk.
    pub(super) fn front(&self) -> Option<&[u8]> {
        self.chunks.front().map(|chunk| &chunk[self.offset..])
    }

    /// Notes that `sent` bytes of [`front`](Self::front) went; true once it is empty.
    fn consume(&mut self, sent: usize) -> bool {
        self.offset += sent;
        if self
            .chunks
            .front()
            .is_some_and(|chunk| self.offset >= chunk.len())
        {
            self.chunks.pop_front();
            self.offset = 0;
        }
        self.chunks.is_empty()
    }
}

impl Worker {
    /// Copies every buffer connection `slot` has queued into its spill, the oldest from
    /// byte `skip` on, and gives the buffers back to the kernel.
    pub(super) fn spill_queue(&mut self, slot: usize, mut skip: usize) {
        let stream = self.conns.get_mut(slot).and_then(|conn| conn.stream_mut());
        let (Some(buffers), Some(stream)) = (self.buffers.as_mut(), stream) else {
            return;
        };
        while let Some((bid, bytes)) = buffers.front(&stream.queue) {
            let rest = &bytes[skip.min(bytes.len())..];
            if !rest.is_empty() {
                let spill = self.spills.entry(slot).or_default();
                spill.chunks.push_back(rest.into());
            }
            skip = 0;
            buffers.dequeue(&mut stream.queue);
            buffers.give_back(bid);
            self.buffers_out -= 1;
        }
    }

    /// Frees the buffers that echo connections hold: called once in a loop turn in which a
    /// receive found none. Queues with no send in flight are moved at once; a send in
    /// flight from a queue is cancelled, and its completion moves the rest
    /// (`stream_sent`).
    pub(super) fn unpin_streams(&mut self) {
        let mut cancels = Vec::new();
        let mut moved = Vec::new();
        for (slot, conn) in &mut self.conns {
            let Some(stream) = conn.stream_mut() else {
                continue;
            };
            if stream.queue.len() == 0 || stream.failed || stream.unpinning {
                continue;
            }
            // A send in flight is the queue's unless the stream has a spill.
            if stream.sending && !self.spills.contains_key(&slot) {
                stream.unpinning = true;
                cancels.push(slot);
            } else {
                moved.push(slot);
            }
        }
        for slot in cancels {
            let cancel = opcode::AsyncCancel::new(token(slot, SEND))
                .build()
                .user_data(CANCEL);
            self.push(&cancel);
        }
        for slot in moved {
            self.spill_queue(slot, 0);
            self.advance(slot);
        }
    }

    /// The send of a connection's oldest spilled chunk completed with `result`.
    pub(super) fn spill_sent(&mut self, slot: usize, result: i32) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        let Some((stream, meter)) = conn.stream_and_meter() else {
            return;
        };
        stream.sending = false;
        let Some(spill) = self.spills.get_mut(&slot) else {
            return;
        };
        let len = spill.front().map_or(0, <[u8]>::len);
        match usize::try_from(result) {
            Ok(sent) if sent == len => {
                if spill.consume(sent) {
                    self.spills.remove(&slot);
                }
                if let Some(meter) = meter {
                    meter.sent(sent);
                }
            }
            _ => {
                stream.failed = true;
                super::stream::note_send_failure(meter, result);
            }
        }
        self.advance(slot);
    }
}
