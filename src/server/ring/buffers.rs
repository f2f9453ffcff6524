//! A ring of provided buffers (`IORING_REGISTER_PBUF_RING`): the kernel picks a free buffer
//! when a receive has bytes, so a connection waiting for its client holds no buffer at all —
//! ten thousand idle connections share the few buffers that bytes are moving through.

use std::alloc::{self, Layout};
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::{IoUring, cqueue, squeue};

/// The buffers of one ring, and the shared ring of entries that offers them to the kernel.
pub(super) struct BufferRing {
    /// `count` entries, page-aligned as the kernel requires.
    entries: NonNull<BufRingEntry>,
    entries_layout: Layout,
    /// `count` buffers of `size` bytes, one after another.
    memory: Box<[u8]>,
    size: usize,
    count: u16,
    /// Our copy of the tail: where the next returned buffer goes.
    tail: u16,
    /// Per buffer: the bytes a receive put in it, and the next buffer of the same
    /// connection's [`Queue`].
    filled: Box<[u32]>,
    next: Box<[u16]>,
}

/// The buffers a connection received and has not sent back yet, oldest first: a list
/// threaded through its ring's per-buffer links, so that a connection keeps two indices and
/// no queue of its own.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Queue {
    head: Option<u16>,
    tail: Option<u16>,
    len: u8,
}

impl Queue {
    /// How many buffers are queued.
    pub(super) fn len(&self) -> usize {
        usize::from(self.len)
    }
}

// SAFETY: the ring is used only by the worker thread that owns it; the raw pointer is to
// memory the ring owns (allocated in `new`, freed in `drop`).
unsafe impl Send for BufferRing {}

impl BufferRing {
    /// `count` (a power of two) buffers of `size` bytes, registered with `ring` as `group`.
    pub(super) fn new<S: squeue::EntryMarker, C: cqueue::EntryMarker>(
        ring: &IoUring<S, C>,
        group: u16,
        count: u16,
        size: usize,
    ) -> io::Result<BufferRing> {
        assert!(
            count.is_power_of_two(),
            "a buffer ring's size is a power of two"
        );
        let entries_layout = Layout::from_size_align(
            usize::from(count) * std::mem::size_of::<BufRingEntry>(),
            4096,
        )
        .map_err(io::Error::other)?;
        // SAFETY: the layout has a non-zero size (count ≥ 1, entries are 16 bytes).
        let raw = unsafe { alloc::alloc_zeroed(entries_layout) };
        let Some(entries) = NonNull::new(raw.cast::<BufRingEntry>()) else {
            alloc::handle_alloc_error(entries_layout);
        };
        let mut buffers = BufferRing {
            entries,
            entries_layout,
            memory: vec![0; usize::from(count) * size].into_boxed_slice(),
            size,
            count,
            tail: 0,
            filled: vec![0; usize::from(count)].into_boxed_slice(),
            next: vec![0; usize::from(count)].into_boxed_slice(),
        };
        // SAFETY: the entries stay valid and page-aligned until `drop`, which comes after
        // the ring is closed, which unregisters the group: every owner drops the ring first
        // (`Worker` declares it before its buffers; `probe` holds both in a tuple, ring
        // first).
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                entries.as_ptr() as u64,
                count,
                group,
                0,
            )?;
        }
        for bid in 0..count {
            buffers.give_back(bid);
        }
        Ok(buffers)
    }

    /// The bytes of buffer `bid`, the first `len` of which a receive filled.
    pub(super) fn bytes(&self, bid: u16, len: usize) -> &[u8] {
        let start = usize::from(bid) * self.size;
        &self.memory[start..start + len.min(self.size)]
    }

    /// Puts buffer `bid`, which a receive filled with `len` bytes, at the end of `queue`.
    pub(super) fn enqueue(&mut self, queue: &mut Queue, bid: u16, len: usize) {
        let index = usize::from(bid);
        self.filled[index] = u32::try_from(len.min(self.size)).unwrap_or(u32::MAX);
        match queue.tail {
            Some(tail) => self.next[usize::from(tail)] = bid,
            None => queue.head = Some(bid),
        }
        queue.tail = Some(bid);
        queue.len = queue.len.saturating_add(1);
    }

    /// The oldest buffer of `queue` and the bytes in it.
    pub(super) fn front(&self, queue: &Queue) -> Option<(u16, &[u8])> {
        let bid = queue.head?;
        let len = self.filled[usize::from(bid)] as usize;
        Some((bid, self.bytes(bid, len)))
    }

    /// Takes the oldest buffer off `queue` (the caller gives it back).
    pub(super) fn dequeue(&mut self, queue: &mut Queue) -> Option<u16> {
        let bid = queue.head?;
        if queue.tail == Some(bid) {
            *queue = Queue::default();
        } else {
            queue.head = Some(self.next[usize::from(bid)]);
            queue.len -= 1;
        }
        Some(bid)
    }

    /// Offers buffer `bid` to the kernel again.
    pub(super) fn give_back(&mut self, bid: u16) {
        let index = usize::from(self.tail & (self.count - 1));
        let addr = self.memory.as_ptr() as u64 + (usize::from(bid) * self.size) as u64;
        // SAFETY: `index` < count, inside the entries allocation; the kernel reads an entry
        // only once the tail (published below, with release ordering) has passed it.
        unsafe {
            let entry = &mut *self.entries.as_ptr().add(index);
            entry.set_addr(addr);
            entry.set_len(u32::try_from(self.size).unwrap_or(u32::MAX));
            entry.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail field overlays the first entry's reserved field, as the kernel
        // defines it; it is a u16 the kernel only reads.
        unsafe {
            let tail = BufRingEntry::tail(self.entries.as_ptr()).cast_mut();
            (*tail.cast::<AtomicU16>()).store(self.tail, Ordering::Release);
        }
    }
}

impl Drop for BufferRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; the ring that read it is closed.
        unsafe { alloc::dealloc(self.entries.as_ptr().cast(), self.entries_layout) };
    }
}
