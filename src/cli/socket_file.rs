//! `listen` on a Unix socket, or `connect` to a Unix datagram one (its temporary socket
//! file), ended by a signal. nc dies by SIGINT, SIGTERM and SIGHUP, and so do `listen` and
//! `connect` (a shell sees 130, 143 or 129, and a shell loop stops on Ctrl-C); but the
//! default action would leave the socket file behind, where `serve` and `forward` remove
//! theirs. So while a socket file exists these signals (and SIGUSR1, SIGUSR2, SIGALRM,
//! whose default action ends a process as well) are caught, the file is removed, and the
//! signal is raised again with its default action.

use std::thread;

use socketkit::client::{self, SocketFile};
use socketkit::error::Op;
use tokio::signal::unix::SignalKind;

use super::signals::{catch, runtime_can_start};

use super::exit::CliError;

/// What `listen` and `connect` do about the ending signals: with a socket file, remove it
/// first ([`remove_on_ending_signal`]); as PID 1 of a PID namespace (a container's
/// entrypoint), end by them at all — the kernel gives PID 1 no default action, so SIGTERM
/// and Ctrl-C did nothing (`docker stop` waited its 10 s for a kill). Otherwise the default
/// actions do. Call it before the `listening on` line.
pub(crate) fn end_on_signals(file: Option<SocketFile>) -> Result<(), CliError> {
    if file.is_none() && std::process::id() != 1 {
        return Ok(());
    }
    remove_on_ending_signal(file)
}

/// Catches [`ENDING`] from now on: the first to come removes `file` and ends the process by
/// that signal (as PID 1, which no signal ends, with its exit status 128 + the signal's
/// number). Call it before the `listening on` line, so that a signal sent as soon as that
/// line is read is already caught.
fn remove_on_ending_signal(file: Option<SocketFile>) -> Result<(), CliError> {
    let failed = |err| CliError::runtime(Op::Create, "signal handler", err);
    runtime_can_start().map_err(failed)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(failed)?;
    let (caught, mut first) = tokio::sync::mpsc::unbounded_channel();
    {
        // Signal streams belong to the runtime that waits on them.
        let _entered = runtime.enter();
        for kind in ENDING {
            let mut stream = catch(kind).map_err(failed)?;
            let caught = caught.clone();
            runtime.spawn(async move {
                if stream.recv().await.is_some() {
                    let _ = caught.send(kind.as_raw_value());
                }
            });
        }
    }
    thread::Builder::new()
        .name("ending-signals".into())
        .spawn(move || {
            // The sender is held here too, so the channel never closes: `recv` is a signal.
            let _held = caught;
            let Some(caught) = runtime.block_on(first.recv()) else {
                return;
            };
            if let Some(file) = file {
                tracing::debug!("signal {caught}: removing {}", file.path().display());
                file.remove();
            }
            super::stderr::flush(super::stderr::EXIT_FLUSH);
            client::die_by_signal(caught);
        })
        .map_err(failed)?;
    Ok(())
}

/// The signals that end nc (SIGINT, SIGTERM, SIGHUP), and the others whose default action
/// ends a process without a core dump and that someone may send (SIGUSR1, SIGUSR2,
/// SIGALRM): each would leave the socket file behind by that action.
const ENDING: [SignalKind; 6] = [
    SignalKind::interrupt(),
    SignalKind::terminate(),
    SignalKind::hangup(),
    SignalKind::user_defined1(),
    SignalKind::user_defined2(),
    SignalKind::alarm(),
];
