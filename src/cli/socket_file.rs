//! `listen` on a Unix socket, or `connect` to a Unix datagram one (its temporary socket
//! file), ended by a signal. nc dies by SIGINT, SIGTERM and SIGHUP, and so do `listen` and
//! `connect` (a shell sees 130, 143 or 129, and a shell loop stops on Ctrl-C); but the
//! default action would leave the socket file behind, where `serve` and `forward` remove
//! theirs. So while a socket file exists these signals are caught, the file is
//! removed, and the signal is raised again with its default action.

use std::thread;

use socketkit::client::{self, SocketFile};
use socketkit::error::Op;
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::exit::CliError;

/// Catches SIGINT, SIGTERM and SIGHUP from now on: the first to come removes `file` and
/// ends the process by that signal. Call it before the `listening on` line, so that a
/// signal sent as soon as that line is read is already caught.
pub(crate) fn remove_on_ending_signal(file: SocketFile) -> Result<(), CliError> {
    let failed = |err| CliError::runtime(Op::Create, "signal handler", err);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(failed)?;
    let ending = {
        // Signal streams belong to the runtime that waits on them.
        let _entered = runtime.enter();
        Ending {
            interrupt: signal(SignalKind::interrupt()).map_err(failed)?,
            terminate: signal(SignalKind::terminate()).map_err(failed)?,
            hangup: signal(SignalKind::hangup()).map_err(failed)?,
        }
    };
    thread::Builder::new()
        .name("ending-signals".into())
        .spawn(move || {
            let caught = runtime.block_on(ending.first());
            tracing::debug!("signal {caught}: removing {}", file.path().display());
            file.remove();
            super::stderr::flush(super::stderr::EXIT_FLUSH);
            client::die_by_signal(caught);
        })
        .map_err(failed)?;
    Ok(())
}

/// The signals that end nc, and so `listen`, once caught.
struct Ending {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl Ending {
    /// Waits for the first of the signals and gives its number.
    async fn first(mut self) -> i32 {
        let kind = tokio::select! {
            _ = self.interrupt.recv() => SignalKind::interrupt(),
            _ = self.terminate.recv() => SignalKind::terminate(),
            _ = self.hangup.recv() => SignalKind::hangup(),
        };
        kind.as_raw_value()
    }
}
