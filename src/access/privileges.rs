//! Dropping root: after the listeners are bound (so ports below 1024 work) and before the
//! first accept, become `--user` / `--group` for good.

use std::ffi::CString;
use std::io;

/// Who the process becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// The user id.
    pub uid: u32,
    /// The group id (the user's primary group unless a group was named).
    pub gid: u32,
}

/// A privilege drop that could not be done; the server must not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrivilegeError {
    /// No such user.
    #[error("no such user '{0}'")]
    NoUser(String),
    /// No such group.
    #[error("no such group '{0}'")]
    NoGroup(String),
    /// The system refused a step (`setgroups`, `setgid`, `setuid`), typically because the
    /// process is not root.
    #[error("cannot {step}: {reason}")]
    Refused {
        /// The call that failed.
        step: &'static str,
        /// Why, in words.
        reason: String,
    },
}

/// Looks up `user` and `group` (names or numeric ids) without changing anything.
///
/// # Errors
///
/// [`PrivilegeError::NoUser`] / [`PrivilegeError::NoGroup`].
pub fn resolve_identity(
    user: Option<&str>,
    group: Option<&str>,
) -> Result<Identity, PrivilegeError> {
    // SAFETY: getuid and getgid cannot fail.
    let (mut uid, mut gid) = unsafe { (libc::getuid(), libc::getgid()) };
    if let Some(user) = user {
        (uid, gid) = lookup_user(user).ok_or_else(|| PrivilegeError::NoUser(user.to_owned()))?;
    }
    if let Some(group) = group {
        gid = lookup_group(group).ok_or_else(|| PrivilegeError::NoGroup(group.to_owned()))?;
    }
    Ok(Identity { uid, gid })
}

/// Becomes `identity` for good: supplementary groups set to the one group, then the group,
/// then the user (in that order: once the user is dropped, the group can no longer change),
/// then checks that root cannot be regained.
///
/// # Errors
///
/// [`PrivilegeError::Refused`] naming the step.
pub fn drop_to(identity: Identity) -> Result<(), PrivilegeError> {
    let refused = |step| PrivilegeError::Refused {
        step,
        reason: crate::error::describe(&io::Error::last_os_error()),
    };
    let groups = [identity.gid];
    // SAFETY: setgroups reads one gid from a live array whose length is given.
    if unsafe { libc::setgroups(1, groups.as_ptr()) } != 0 {
        return Err(refused("setgroups"));
    }
    // SAFETY: plain system calls on ids.
    if unsafe { libc::setgid(identity.gid) } != 0 {
        return Err(refused("setgid"));
    }
    // SAFETY: as above.
    if unsafe { libc::setuid(identity.uid) } != 0 {
        return Err(refused("setuid"));
    }
    // SAFETY: as above; a setuid(0) that succeeds would mean the drop did not hold.
    if identity.uid != 0 && unsafe { libc::setuid(0) } == 0 {
        return Err(PrivilegeError::Refused {
            step: "drop root",
            reason: "root could be regained".into(),
        });
    }
    Ok(())
}

fn lookup_user(user: &str) -> Option<(u32, u32)> {
    let name = CString::new(user).ok()?;
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
    if rc == 0 && !found.is_null() {
        return Some((entry.pw_uid, entry.pw_gid));
    }
    // A number names the id itself (as chown and install do); its group is the same number.
    user.parse().ok().map(|id| (id, id))
}

fn lookup_group(group: &str) -> Option<u32> {
    let name = CString::new(group).ok()?;
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
    if rc == 0 && !found.is_null() {
        return Some(entry.gr_gid);
    }
    group.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_numbers_resolve_and_nonsense_does_not() {
        assert_eq!(resolve_identity(Some("root"), None).unwrap().uid, 0);
        assert_eq!(
            resolve_identity(Some("4242"), Some("4343")).unwrap(),
            Identity {
                uid: 4242,
                gid: 4343
            }
        );
        assert!(matches!(
            resolve_identity(Some("no-such-user-here"), None),
            Err(PrivilegeError::NoUser(_))
        ));
        assert!(matches!(
            resolve_identity(None, Some("no-such-group-here")),
            Err(PrivilegeError::NoGroup(_))
        ));
    }
}
