//! `--pid-file`: the file that names the serving process, written so that a reader never
//! sees half a pid and never through a symlink, handed over on a SIGUSR2 restart, and
//! removed at exit while it still names this process.

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use socketkit::error::Op;

use super::exit::CliError;

/// `--pid-file`: holds this process's pid while it serves; removed at exit unless it names
/// another process by then (the one a restart handed over to).
#[derive(Debug)]
pub(crate) struct PidFile {
    path: PathBuf,
    /// The file, open for writing: handed to a restart's new process, which may not
    /// replace the file in its directory once the privileges are dropped (`/run`).
    file: Option<File>,
}

impl PidFile {
    /// Writes the pid atomically (a temporary file renamed over the path), so a reader never
    /// sees half a pid, nor an empty file between two restarts. The temporary file is made
    /// new (`O_EXCL`: never through a symlink someone who may write the directory left
    /// there), and the path must be a regular file or nothing: a device or FIFO named by
    /// mistake is not replaced (and removed at exit).
    pub(crate) fn write(path: &Path) -> Result<PidFile, CliError> {
        let pid = std::process::id();
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(format!(".{pid}.tmp"));
        let temporary = PathBuf::from(temporary);
        let fail = |err| CliError::Runtime(socketkit::Error::new(Op::Io, path.display(), err));
        if std::fs::symlink_metadata(path).is_ok_and(|meta| !meta.is_file() && !meta.is_symlink()) {
            return Err(fail(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            )));
        }
        let create = || {
            use std::os::unix::fs::OpenOptionsExt;
            // 0644 whatever the umask allows beyond it: a pid file others may write would
            // let them aim the next `kill $(cat …)` at any process.
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&temporary)
        };
        // One left by a process that died before its rename: ours to replace (removing a
        // symlink removes the link, not what it names).
        let file = match create() {
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                let _ = std::fs::remove_file(&temporary);
                create()
            }
            made => made,
        };
        // A file half written (a full disk) goes as one that cannot be renamed does: a
        // supervisor that restarts on failure must not fill the directory with them.
        let file = file
            .and_then(|mut file| {
                file.write_all(format!("{pid}\n").as_bytes())?;
                std::fs::rename(&temporary, path)?;
                Ok(file)
            })
            .map_err(|err| {
                let _ = std::fs::remove_file(&temporary);
                fail(err)
            })?;
        Ok(PidFile {
            path: path.to_path_buf(),
            file: Some(file),
        })
    }

    /// Writes the pid as [`PidFile::write`] does, or, where this process may not replace
    /// the file (a restart's new process, running as the `--user` the old one became, in a
    /// directory only root may write), through `handed` — the file the old process handed
    /// over, open for writing — in place.
    pub(crate) fn write_or_through(
        path: &Path,
        handed: Option<OwnedFd>,
    ) -> Result<PidFile, CliError> {
        let refused = match PidFile::write(path) {
            Err(err) if handed.is_some() => err,
            written => return written,
        };
        let Some(handed) = handed else {
            return Err(refused);
        };
        let file = File::from(handed);
        // In place, yet never empty (a truncate first left it so for a moment: a script's
        // `kill $(cat …)` then signalled nothing) and never two pids: the new pid is written
        // over the old one with blank lines over what is left of it, in one write, and the
        // blank lines cut off after. A reader sees the old pid or the new one.
        let pid = format!("{}\n", std::process::id()).into_bytes();
        let rewrite = |file: &File| {
            let old_len = usize::try_from(file.metadata()?.len()).unwrap_or(usize::MAX);
            let mut text = pid.clone();
            text.resize(old_len.clamp(pid.len(), 64), b'\n');
            std::os::unix::fs::FileExt::write_all_at(file, &text, 0)?;
            file.set_len(pid.len() as u64)
        };
        rewrite(&file)
            .map_err(|err| CliError::Runtime(socketkit::Error::new(Op::Io, path.display(), err)))?;
        Ok(PidFile {
            path: path.to_path_buf(),
            file: Some(file),
        })
    }

    /// The open file, for a restart to hand over (taken: the pid file needs it for nothing
    /// else).
    pub(crate) fn take_descriptor(&mut self) -> Option<OwnedFd> {
        self.file.take().map(OwnedFd::from)
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // A regular file only: whatever replaced it is not ours to read or remove.
        let regular = std::fs::symlink_metadata(&self.path).is_ok_and(|meta| meta.is_file());
        let ours = regular
            && socketkit::option_file::read_text(&self.path)
                .is_ok_and(|text| text.trim() == std::process::id().to_string());
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Someone who may write the pid file's directory cannot make it write elsewhere: a
    /// symlink at the temporary file's name is replaced, not followed (the file it named
    /// was truncated and overwritten, as root).
    #[test]
    fn the_pid_file_is_written_through_no_symlink() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious\n")?;
        let path = dir.path().join("s.pid");
        let temporary = dir.path().join(format!("s.pid.{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, &temporary)?;
        let written = PidFile::write(&path).map_err(|err| err.to_string())?;
        assert_eq!(std::fs::read_to_string(&victim)?, "precious\n");
        assert_eq!(
            std::fs::read_to_string(&path)?,
            format!("{}\n", std::process::id())
        );
        drop(written);
        assert!(!path.exists(), "removed at exit");
        Ok(())
    }

    /// A FIFO (or device) named as the pid file is refused, not replaced and then removed.
    #[test]
    fn a_pid_file_that_is_no_regular_file_is_refused() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status()?;
        assert!(made.success());
        let refused = PidFile::write(&fifo)
            .map(drop)
            .map_err(|err| err.to_string());
        assert!(
            refused
                .as_ref()
                .is_err_and(|err| err.contains("not a regular file")),
            "{refused:?}"
        );
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::symlink_metadata(&fifo)?.file_type().is_fifo());
        Ok(())
    }
}
