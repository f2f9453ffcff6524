//! [`TempSocketPath`]: a unique socket file name in the temporary directory, for a Unix
//! datagram client that must have an address to be answered at.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A unique socket file name in the temporary directory, removed on drop: the address a
/// Unix datagram client binds so that its server can answer it.
#[derive(Debug)]
pub(crate) struct TempSocketPath(PathBuf);

impl TempSocketPath {
    /// A name no other socket of this process uses (`socketkit-PID-N.sock`).
    pub(crate) fn unique() -> TempSocketPath {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("socketkit-{}-{n}.sock", std::process::id());
        TempSocketPath(std::env::temp_dir().join(name))
    }

    /// The path.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempSocketPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
