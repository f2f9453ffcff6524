//! A ring worker's admission: the server's stages that decide on what the accept gives —
//! the client's address (access rules, per-source limits) and a PROXY header — run here,
//! on the worker, with the same outcomes, counts and log lines as on the epoll path.
//!
//! The PROXY header is received, not peeked at: a PROXY listener defers its accepts until
//! the client's first bytes are in (`TCP_DEFER_ACCEPT`), so the first receive, which does
//! not wait, nearly always holds the whole header. Bytes that came after it in the same
//! receive are the service's: echo sends them back first, discard counts them, and an
//! immediate reply never reads its client. Only a header not there at once is waited for,
//! with a timeout linked to each receive for what is left until the stage's deadline.

use std::time::{Duration, Instant};

use io_uring::opcode;
use io_uring::squeue;
use io_uring::types::{Fd, Timespec};

use super::connection::{Admitted, HeaderRead, Job, local_of, peer_of};
use super::{HEADER, HEADER_TIMEOUT, Worker, token};
use crate::proxy_protocol::Gather;
use crate::server::admission::late;
use crate::server::proxy::refusal;
use crate::server::{Refusal, RefusalReason};
use crate::socket::Address;

impl Worker {
    /// Runs the admission stages that can decide now: what the routine begins with, or
    /// `None` when the connection was refused (its close queued) or its PROXY header is
    /// being received.
    pub(super) fn admit(&mut self, slot: usize, started: Option<Instant>) -> Option<Admitted> {
        let Some(pipeline) = &self.admission else {
            return Some(Admitted {
                peer: None,
                started,
                held: Vec::new(),
                header_len: 0,
            });
        };
        let fd = self.conns.get(slot)?.fd;
        let peer = peer_of(fd).unwrap_or_else(|| Address::unix(""));
        let Some(proxy) = pipeline.proxy_now() else {
            let Some(held) = pipeline.check_early(&peer, &self.meter, &|| local_of(fd)) else {
                self.reset(slot);
                return None;
            };
            return Some(Admitted {
                peer: Some(peer),
                started,
                held,
                header_len: 0,
            });
        };
        if let Err(refused) = proxy.check_trust(&peer) {
            self.refuse(slot, &peer, &refused);
            return None;
        }
        let conn = self.conns.get_mut(slot)?;
        conn.job = Job::Header(Box::new(HeaderRead {
            gather: Gather::new(),
            proxy: peer,
            started,
            deadline: None,
            wait: Timespec::new(),
        }));
        self.receive_header(slot, false);
        None
    }

    /// The PROXY stage's deadline for a whole header.
    fn header_timeout(&self) -> Duration {
        let proxy = self
            .admission
            .as_ref()
            .and_then(|pipeline| pipeline.proxy_now());
        proxy.map_or(Duration::ZERO, |proxy| proxy.timeout())
    }

    /// Posts a receive of the header's next bytes: one that does not wait, or (`wait`) one
    /// that waits up to the deadline, which the first such receive sets.
    fn receive_header(&mut self, slot: usize, wait: bool) {
        let timeout = self.header_timeout();
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        let fd = conn.fd;
        let Job::Header(read) = &mut conn.job else {
            return;
        };
        let room = read.gather.room();
        let recv = opcode::Recv::new(Fd(fd), room.as_mut_ptr(), room.len() as u32);
        if !wait {
            let entry = recv
                .flags(libc::MSG_DONTWAIT)
                .build()
                .user_data(token(slot, HEADER));
            return self.push(&entry);
        }
        let deadline = *read
            .deadline
            .get_or_insert_with(|| crate::socket::deadline_in(timeout));
        let left = deadline.saturating_duration_since(Instant::now());
        read.wait = Timespec::from(left);
        let recv = recv
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(token(slot, HEADER));
        // The timespec lives in the boxed read until the receive's completion, which comes
        // after the timeout's.
        let timer = opcode::LinkTimeout::new(&read.wait)
            .build()
            .user_data(token(slot, HEADER_TIMEOUT));
        self.push(&recv);
        self.push(&timer);
    }

    /// A receive of header bytes completed with `result`.
    pub(super) fn header_received(&mut self, slot: usize, result: i32) {
        if self.forced {
            return self.close(slot);
        }
        let timeout = self.header_timeout();
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        let fd = conn.fd;
        let Job::Header(read) = &mut conn.job else {
            return;
        };
        let decided = match result {
            n @ 1.. => match read.gather.received(n as usize) {
                Ok(None) => return self.receive_header(slot, true),
                Ok(Some(got)) => Ok((got.header, got.len, Box::<[u8]>::from(got.after))),
                Err(err) => Err(refusal(err.to_string())),
            },
            0 => Err(refusal("the connection ended before a complete header")),
            _ if result == -libc::EAGAIN => return self.receive_header(slot, true),
            _ if super::stream::was_cancelled(result) => Err(late(RefusalReason::Proxy, timeout)),
            _ => Err(refusal(format!(
                "reading the header: {}",
                crate::error::describe(&std::io::Error::from_raw_os_error(-result))
            ))),
        };
        let proxy = read.proxy.clone();
        let started = read.started;
        let (header, header_len, first) = match decided {
            Ok(taken) => taken,
            Err(refused) => return self.refuse(slot, &proxy, &refused),
        };
        let peer = header.client().unwrap_or(proxy);
        let held = self.admission.as_ref().and_then(|pipeline| {
            // Only a worker with admission stages receives headers: `None` is a refusal.
            pipeline.check_after_proxy(&peer, &self.meter, &|| local_of(fd))
        });
        let Some(held) = held else {
            return self.reset(slot);
        };
        let admitted = Admitted {
            peer: Some(peer),
            started,
            held,
            header_len,
        };
        self.begin(slot, admitted, first);
    }

    /// Counts and logs a refusal, and resets the connection.
    fn refuse(&mut self, slot: usize, peer: &Address, refused: &Refusal) {
        let fd = self.conns.get(slot).map(|conn| conn.fd);
        if let Some(pipeline) = &self.admission {
            let local = || fd.and_then(local_of);
            pipeline.refused_early(peer, refused, &self.meter, &local);
        }
        self.reset(slot);
    }

    /// Closes a refused connection with a reset (`SO_LINGER` 0), as the epoll path does.
    fn reset(&mut self, slot: usize) {
        if let Some(conn) = self.conns.get(slot) {
            // SAFETY: the descriptor is open until its close, queued just below, completes.
            crate::net::close_with_reset(unsafe { std::os::fd::BorrowedFd::borrow_raw(conn.fd) });
        }
        self.close(slot);
    }
}
