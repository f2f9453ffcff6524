//! A descriptor sent over a Unix stream socket (`sendmsg(2)`/`recvmsg(2)` with
//! `SCM_RIGHTS`): a restart hands its pid file to the new process this way, on the socket the
//! new process reports readiness on. A descriptor in flight is only the receiver's once it
//! asks for it: a process that never does (an older socketkit that knows nothing of it)
//! never has it in its table, so no program it starts can inherit it.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// The byte that carries the descriptor (a message needs one).
const CARRIER: u8 = b'F';

/// Sends `fd` on the Unix stream socket `socket`.
pub(crate) fn send_descriptor(socket: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    let mut carrier = [CARRIER];
    let mut iov = libc::iovec {
        iov_base: carrier.as_mut_ptr().cast(),
        iov_len: carrier.len(),
    };
    // A u64 array keeps the buffer aligned for `cmsghdr`.
    let mut control = [0u64; 4];
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) } as usize;
    debug_assert!(space <= std::mem::size_of_val(&control));
    // SAFETY: a zeroed msghdr is valid; its pointers are set to live buffers below, of the
    // lengths given, and the header CMSG_FIRSTHDR returns lies within `control` (its
    // length covers one header and one descriptor, checked above).
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let header = libc::CMSG_FIRSTHDR(&msg);
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(header).cast::<libc::c_int>(), raw);
        if libc::sendmsg(socket.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The descriptor waiting on the Unix stream socket `socket` (close-on-exec), if one was
/// sent; `None` when nothing waits (without waiting) or what waits carries none.
pub(crate) fn receive_descriptor(socket: BorrowedFd<'_>) -> io::Result<Option<OwnedFd>> {
    let mut carrier = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: carrier.as_mut_ptr().cast(),
        iov_len: carrier.len(),
    };
    let mut control = [0u64; 4];
    // SAFETY: as in `send_descriptor`; the control messages are read only within the
    // length recvmsg reported, and a descriptor only from an SCM_RIGHTS message of the
    // size of one.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let flags = libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC;
        let n = libc::recvmsg(socket.as_raw_fd(), &mut msg, flags);
        if n < 0 {
            let err = io::Error::last_os_error();
            return match err.kind() {
                io::ErrorKind::WouldBlock => Ok(None),
                _ => Err(err),
            };
        }
        let header = libc::CMSG_FIRSTHDR(&msg);
        if n == 0 || header.is_null() {
            return Ok(None);
        }
        let one = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as usize;
        if (*header).cmsg_level != libc::SOL_SOCKET
            || (*header).cmsg_type != libc::SCM_RIGHTS
            || (*header).cmsg_len as usize != one
        {
            return Ok(None);
        }
        let raw = std::ptr::read_unaligned(libc::CMSG_DATA(header).cast::<libc::c_int>());
        Ok(Some(OwnedFd::from_raw_fd(raw)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsFd;

    #[test]
    fn a_descriptor_goes_over_and_nothing_waits_after() -> io::Result<()> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        let mut file = tempfile::tempfile()?;
        file.write_all(b"1234\n")?;
        assert!(
            receive_descriptor(theirs.as_fd())?.is_none(),
            "nothing sent yet"
        );
        send_descriptor(ours.as_fd(), file.as_fd())?;
        let got = receive_descriptor(theirs.as_fd())?.expect("the descriptor");
        let mut same = std::fs::File::from(got);
        same.rewind()?;
        let mut text = String::new();
        same.read_to_string(&mut text)?;
        assert_eq!(text, "1234\n");
        assert!(receive_descriptor(theirs.as_fd())?.is_none());
        Ok(())
    }
}
