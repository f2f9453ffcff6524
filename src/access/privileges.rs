//! Dropping root: after the listeners are bound (so ports below 1024 work) and before the
//! first accept, become `--user` / `--group` for good.

use std::ffi::CString;
use std::io;

use crate::sys;

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
    let (mut uid, mut gid) = sys::current_ids();
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
    let refused = |step| {
        move |err: io::Error| PrivilegeError::Refused {
            step,
            reason: crate::error::describe(&err),
        }
    };
    // Already that user and group, and not root: nothing to drop (a server restarted by
    // SIGUSR2 starts its new copy as the user the old one became, which may not call
    // setgroups). But that copy never changed its credentials, so the kernel left it
    // dumpable: any process of the user could read its memory (the environment root
    // started it with) and take its listening sockets on privileged ports.
    if sys::current_ids() == (identity.uid, identity.gid) && identity.uid != 0 {
        record_account(identity);
        return sys::set_not_dumpable().map_err(refused("prctl(PR_SET_DUMPABLE)"));
    }
    sys::set_groups(identity.gid).map_err(refused("setgroups"))?;
    sys::set_gid(identity.gid).map_err(refused("setgid"))?;
    sys::set_uid(identity.uid).map_err(refused("setuid"))?;
    // A setuid(0) that succeeds would mean the drop did not hold.
    if identity.uid != 0 && sys::set_uid(0).is_ok() {
        return Err(PrivilegeError::Refused {
            step: "drop root",
            reason: "root could be regained".into(),
        });
    }
    record_account(identity);
    // The kernel has done so on the change of credentials unless `fs.suid_dumpable` says
    // otherwise: asked here as well.
    sys::set_not_dumpable().map_err(refused("prctl(PR_SET_DUMPABLE)"))
}

/// The account the process became by [`drop_to`], when it became a user other than root
/// that the password database knows.
static BECAME: std::sync::OnceLock<sys::UserAccount> = std::sync::OnceLock::new();

fn record_account(identity: Identity) {
    if identity.uid == 0 {
        return;
    }
    if let Some(account) = sys::user_account(identity.uid) {
        // A second drop (a library caller's) to the same process-wide identity finds the
        // record made; the credentials cannot change again once root is gone.
        let _ = BECAME.set(account);
    }
}

/// What a program the process starts should find in its environment of the user the
/// process became (`HOME`, `USER`, `LOGNAME`, `SHELL`, as `login(1)` and systemd's
/// `User=` set them), once [`drop_to`] made it a user other than root. Empty otherwise:
/// the environment the process was started with is then still true of it.
pub(crate) fn account_environment() -> Vec<(&'static str, &'static std::ffi::OsStr)> {
    let Some(account) = BECAME.get() else {
        return Vec::new();
    };
    let shell = match account.shell.is_empty() {
        true => std::ffi::OsStr::new("/bin/sh"),
        false => account.shell.as_os_str(),
    };
    vec![
        ("HOME", account.home.as_os_str()),
        ("USER", account.name.as_os_str()),
        ("LOGNAME", account.name.as_os_str()),
        ("SHELL", shell),
    ]
}

/// Whether a process of `identity` may remove the file at `path`: it may write and search
/// its directory, and where the directory is sticky (`/tmp`) it owns the file or the
/// directory. From the mode bits alone (ACLs are not read), so a `true` may still fail.
/// A server that drops root asks before it does: a socket file or pid file it made in a
/// directory only root may write (`/run`) stays after it exits.
pub fn may_remove(identity: Identity, path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    if identity.uid == 0 {
        return true;
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => std::path::Path::new("."),
    };
    let Ok(meta) = std::fs::metadata(dir) else {
        return false;
    };
    let writable = bits_for(identity, &meta) & 0o3 == 0o3;
    let sticky = meta.mode() & 0o1000 != 0;
    let owner = std::fs::symlink_metadata(path).map_or(u32::MAX, |file| file.uid());
    writable && (!sticky || owner == identity.uid || meta.uid() == identity.uid)
}

/// Whether a process of `identity` may execute the file at `path`: it has the execute bit
/// that applies to `identity` (owner, group, others), and every directory above it lets
/// `identity` search it. From the mode bits alone, as [`may_remove`]: a server that drops
/// root (to `identity`'s one group, see [`drop_to`]) asks at start whether its exec program
/// will run for every connection, rather than fail at the first.
pub fn may_execute(identity: Identity, path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let allows = |meta: &std::fs::Metadata, bit: u32| match identity.uid {
        // Root searches any directory, and executes a file with any execute bit.
        0 => !meta.is_file() || meta.mode() & 0o111 != 0,
        _ => bits_for(identity, meta) & bit != 0,
    };
    let Ok(file) = std::fs::metadata(path) else {
        return false;
    };
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let directories_searchable = absolute
        .ancestors()
        .skip(1)
        .all(|dir| std::fs::metadata(dir).is_ok_and(|meta| allows(&meta, 0o1)));
    file.is_file() && allows(&file, 0o1) && directories_searchable
}

/// The `rwx` bits of `meta`'s mode that apply to `identity` (the owner's, the group's or the
/// others'), in the lowest three.
fn bits_for(identity: Identity, meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::MetadataExt;
    let mode = meta.mode();
    if meta.uid() == identity.uid {
        mode >> 6
    } else if meta.gid() == identity.gid {
        mode >> 3
    } else {
        mode
    }
}

fn lookup_user(user: &str) -> Option<(u32, u32)> {
    let found = CString::new(user)
        .ok()
        .and_then(|name| sys::user_ids(&name));
    // A number names the id itself (as chown and install do); its group is the same number.
    found.or_else(|| user.parse().ok().map(|id| (id, id)))
}

fn lookup_group(group: &str) -> Option<u32> {
    let found = CString::new(group)
        .ok()
        .and_then(|name| sys::group_id(&name));
    found.or_else(|| group.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_is_runnable_by_the_bits_that_apply_to_the_identity() -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let program = dir.path().join("program");
        std::fs::write(&program, "#!/bin/sh\n")?;
        let stranger = Identity {
            uid: 4242,
            gid: 4343,
        };
        let root = Identity { uid: 0, gid: 0 };
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755))?;
        assert!(may_execute(stranger, &program) && may_execute(root, &program));
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o700))?;
        assert!(!may_execute(stranger, &program));
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o644))?;
        assert!(
            !may_execute(root, &program),
            "root needs an execute bit too"
        );
        // A directory above that the identity may not search.
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755))?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(dir.path())?);
        if owner != stranger.uid {
            assert!(!may_execute(stranger, &program));
        }
        assert!(!may_execute(stranger, &dir.path().join("missing")));
        Ok(())
    }

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
