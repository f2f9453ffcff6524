//! Telling a service manager how the server is doing: systemd's `sd_notify(3)` protocol
//! (a datagram to the socket `NOTIFY_SOCKET` names), sent with the `sd-notify` crate. With
//! no `NOTIFY_SOCKET` nothing is sent, so calling these costs nothing elsewhere.

use std::io;

use sd_notify::NotifyState;

/// A state change for the service manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManagerState {
    /// `READY=1`: the listeners are bound and the server accepts connections.
    Ready,
    /// `STOPPING=1`: the server drains and will exit.
    Stopping,
    /// `MAINPID=PID`: the process `PID` serves from now on (after a restart's handover).
    MainPid(u32),
}

/// Sends `state` to the service manager, if one asked for notifications (`NOTIFY_SOCKET`).
///
/// # Errors
///
/// The notification socket is set but cannot be reached.
pub fn notify_manager(state: ManagerState) -> io::Result<()> {
    let state = match state {
        ManagerState::Ready => NotifyState::Ready,
        ManagerState::Stopping => NotifyState::Stopping,
        ManagerState::MainPid(pid) => NotifyState::MainPid(pid),
    };
    sd_notify::notify(&[state])
}
