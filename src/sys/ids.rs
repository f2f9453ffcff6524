//! User and group ids (POSIX): who the process is, who a name is, and becoming someone else
//! (`--user`/`--group` after binding).

use std::ffi::CStr;
use std::io;

/// The process's real user and group ids (`getuid`, `getgid`).
pub(crate) fn current_ids() -> (u32, u32) {
    // SAFETY: getuid and getgid cannot fail.
    unsafe { (libc::getuid(), libc::getgid()) }
}

/// The user and primary group ids of the user called `name` (`getpwnam_r`), if there is one.
pub(crate) fn user_ids(name: &CStr) -> Option<(u32, u32)> {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: passwd is plain data; zeroed is a valid value for getpwnam_r to fill.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is live for the call and the buffer's length is given.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut entry,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    (rc == 0 && !found.is_null()).then_some((entry.pw_uid, entry.pw_gid))
}

/// What the password database says of the user with id `uid` (`getpwuid_r`): the name,
/// home directory and login shell a login gives its environment, if there is an entry.
pub(crate) fn user_account(uid: u32) -> Option<UserAccount> {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: passwd is plain data; zeroed is a valid value for getpwuid_r to fill.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is live for the call and the buffer's length is given.
    let rc = unsafe { libc::getpwuid_r(uid, &mut entry, buf.as_mut_ptr(), buf.len(), &mut found) };
    if rc != 0 || found.is_null() {
        return None;
    }
    let text = |field: *const libc::c_char| -> std::ffi::OsString {
        use std::os::unix::ffi::OsStrExt;
        if field.is_null() {
            return std::ffi::OsString::new();
        }
        // SAFETY: getpwuid_r filled the entry's strings into `buf`, NUL-terminated, and
        // `buf` is alive here.
        std::ffi::OsStr::from_bytes(unsafe { CStr::from_ptr(field) }.to_bytes()).to_owned()
    };
    Some(UserAccount {
        name: text(entry.pw_name),
        home: text(entry.pw_dir),
        shell: text(entry.pw_shell),
    })
}

/// A user's entry in the password database, as far as a login's environment needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserAccount {
    /// The login name (`USER`, `LOGNAME`).
    pub(crate) name: std::ffi::OsString,
    /// The home directory (`HOME`).
    pub(crate) home: std::ffi::OsString,
    /// The login shell (`SHELL`); may be empty, which means `/bin/sh`.
    pub(crate) shell: std::ffi::OsString,
}

/// The id of the group called `name` (`getgrnam_r`), if there is one.
pub(crate) fn group_id(name: &CStr) -> Option<u32> {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: group is plain data; zeroed is a valid value for getgrnam_r to fill.
    let mut entry: libc::group = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is live for the call and the buffer's length is given.
    let rc = unsafe {
        libc::getgrnam_r(
            name.as_ptr(),
            &mut entry,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    (rc == 0 && !found.is_null()).then_some(entry.gr_gid)
}

/// Sets the supplementary groups to the one group `gid` (`setgroups`).
pub(crate) fn set_groups(gid: u32) -> io::Result<()> {
    let groups = [gid];
    // SAFETY: setgroups reads one gid from a live array whose length is given.
    check(unsafe { libc::setgroups(1, groups.as_ptr()) })
}

/// Sets the group id (`setgid`).
pub(crate) fn set_gid(gid: u32) -> io::Result<()> {
    // SAFETY: a plain system call on an id.
    check(unsafe { libc::setgid(gid) })
}

/// Sets the user id (`setuid`).
pub(crate) fn set_uid(uid: u32) -> io::Result<()> {
    // SAFETY: a plain system call on an id.
    check(unsafe { libc::setuid(uid) })
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
