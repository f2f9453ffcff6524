//! Reaping the orphans a PID 1 adopts (`waitpid(2)` on its zombie children that lead no
//! process group of their own), found through `/proc/self/task/*/children` (where there
//! is no `/proc`, none are found).

use std::io;

/// Reaps this process's zombie children that do not lead a process group: the orphans of
/// its own children (a program's background `sleep`), which the kernel gives to PID 1. The
/// children this process starts itself lead a group each (`serve exec`'s programs) and are
/// left to whoever waits for them. How many were reaped.
pub(crate) fn reap_orphans() -> io::Result<usize> {
    let mut reaped = 0;
    for task in std::fs::read_dir("/proc/self/task")?.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for pid in children
            .split_whitespace()
            .filter_map(|pid| pid.parse::<i32>().ok())
        {
            if is_zombie_outside_its_group(pid) {
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

/// Whether `pid` is a zombie that does not lead its process group (`/proc/PID/stat`: the
/// state and the group follow the command's closing parenthesis).
fn is_zombie_outside_its_group(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    let mut fields = rest.split_whitespace();
    let state = fields.next();
    let group = fields.nth(1).and_then(|group| group.parse::<i32>().ok());
    state == Some("Z") && group.is_some_and(|group| group != pid)
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
        assert!(!is_zombie_outside_its_group(pid));
        let _ = child.kill();
        let _ = child.wait();
    }
}
