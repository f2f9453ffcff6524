//! A pseudo-terminal, for tests of what a program does when a person sits at it.

use std::os::fd::{FromRawFd, OwnedFd};

/// A pseudo-terminal: (the side a terminal emulator holds, the side a program reads and
/// writes as its terminal).
pub fn pty() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let (mut controller, mut terminal) = (-1, -1);
    // SAFETY: openpty writes two descriptors through the pointers, which point at live
    // ints; the name, settings and size are optional (null).
    let rc = unsafe {
        libc::openpty(
            &mut controller,
            &mut terminal,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just opened by openpty and are owned by nobody else.
    Ok(unsafe {
        (
            OwnedFd::from_raw_fd(controller),
            OwnedFd::from_raw_fd(terminal),
        )
    })
}
