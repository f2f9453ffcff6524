//! Reaping the orphans a PID 1 adopts (`waitpid(2)` on its zombie children that it did not
//! start itself), found through `/proc/self/task/*/children` (where there is no `/proc`,
//! none are found).

use std::io;

/// Reaps this process's zombie children that are not `own` (started here, and waited for by
/// whoever started them): the orphans of its children's children (a program's background
/// `sleep`, a `setsid` daemon), which the kernel gives to PID 1. How many were reaped.
pub(crate) fn reap_orphans(own: impl Fn(i32) -> bool) -> io::Result<usize> {
    let mut reaped = 0;
    for task in std::fs::read_dir("/proc/self/task")?.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for pid in children
            .split_whitespace()
            .filter_map(|pid| pid.parse::<i32>().ok())
        {
            if !own(pid) && is_zombie(pid) {
                let mut status = 0;
                // SAFETY: waitpid writes only the status integer passed; WNOHANG never blocks.
                if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
                    reaped += 1;
                }
            }
        }
    }
    Ok(reaped)
}

/// Whether `pid` is a zombie (`/proc/PID/stat`: the state follows the command's closing
/// parenthesis).
fn is_zombie(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    rest.split_whitespace().next() == Some("Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_child_is_no_zombie() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep");
        let pid = i32::try_from(child.id()).expect("a pid");
        assert!(!is_zombie(pid));
        let _ = child.kill();
        let _ = child.wait();
    }
}
