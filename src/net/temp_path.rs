//! [`TempSocketPath`]: a unique socket file name in the temporary directory, for a Unix
//! datagram client that must have an address to be answered at.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use super::unix_file::clear_stale_socket;
use crate::socket::Type;

/// How many names [`TempSocketPath::unique`] tries before it gives up looking and returns
/// the last (whose bind then fails with the reason).
const TRIES: u32 = 64;

/// A unique socket file name in the temporary directory, removed on drop: the address a
/// Unix datagram client binds so that its server can answer it.
#[derive(Debug)]
pub(crate) struct TempSocketPath(PathBuf);

impl TempSocketPath {
    /// A name no other socket of this process uses (`socketkit-PID-N-RANDOM.sock`), free to
    /// bind. The random part keeps another user of a shared temporary directory from
    /// taking the names first: `PID-N` alone could be foreseen, and a relay whose next names
    /// were all taken could answer no new client.
    pub(crate) fn unique() -> TempSocketPath {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir();
        let pid = std::process::id();
        let mut path = PathBuf::new();
        for _ in 0..TRIES {
            path = name_in(
                &dir,
                pid,
                NEXT.fetch_add(1, Ordering::Relaxed),
                unforeseeable(),
            );
            if is_free(&path) {
                break;
            }
        }
        TempSocketPath(path)
    }

    /// The path.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempSocketPath {
    /// Removes the file if it is a socket of this user's: when no name was free (all taken
    /// in a shared directory, say by another user), the last one tried is not this
    /// process's to remove.
    fn drop(&mut self) {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let (uid, _) = crate::sys::current_ids();
        let ours = std::fs::symlink_metadata(&self.0)
            .is_ok_and(|meta| meta.file_type().is_socket() && meta.uid() == uid);
        if ours {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

fn name_in(dir: &Path, pid: u32, n: u32, random: u32) -> PathBuf {
    dir.join(format!("socketkit-{pid}-{n}-{random:08x}.sock"))
}

/// A number nobody else can foresee: std's hasher keys come from the system's random
/// source, and each `RandomState` has keys of its own.
fn unforeseeable() -> u32 {
    use std::hash::BuildHasher;
    let hashed = std::collections::hash_map::RandomState::new().hash_one(std::time::Instant::now());
    // The low half of a keyed hash: as unforeseeable as the whole.
    (hashed & u64::from(u32::MAX)) as u32
}

/// Whether a client may bind `path`: nothing is there, or a socket nobody is bound to, which
/// is removed. Such a file is left by a process of the same PID (PIDs come round again)
/// that was killed before it could remove its own; binding over it would fail with
/// `address already in use`. A live socket or another kind of file is left alone.
fn is_free(path: &Path) -> bool {
    clear_stale_socket(path, Type::Datagram).is_ok()
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixDatagram;

    use super::*;

    #[test]
    fn a_dead_clients_file_is_cleared_and_a_live_one_or_a_plain_file_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let stale = name_in(dir.path(), 7, 0, 0);
        drop(UnixDatagram::bind(&stale).expect("bind")); // the file outlives its socket
        assert!(stale.exists());
        assert!(is_free(&stale));
        assert!(!stale.exists(), "the stale file is removed");
        UnixDatagram::bind(&stale).expect("its name binds again");

        let live = name_in(dir.path(), 7, 1, 0);
        let _bound = UnixDatagram::bind(&live).expect("bind");
        assert!(!is_free(&live));
        assert!(live.exists(), "a live socket's file is left alone");

        let plain = name_in(dir.path(), 7, 2, 0);
        std::fs::write(&plain, b"not a socket").expect("write");
        assert!(!is_free(&plain));
        assert_eq!(std::fs::read(&plain).expect("read"), b"not a socket");

        assert!(is_free(&name_in(dir.path(), 7, 3, 0)), "nothing there");

        // A name that was not free is not removed with its path.
        drop(TempSocketPath(plain.clone()));
        assert!(plain.exists(), "a file not of ours is left");
    }
}
