//! Kernel features taken away from one child process, the way a container's seccomp profile
//! or an older kernel takes them: a classic BPF filter, installed between fork and exec,
//! that fails chosen system calls (optionally only with chosen arguments) with an errno.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// One system call to fail.
pub struct Refusal {
    /// Its number (`libc::SYS_*`).
    pub syscall: libc::c_long,
    /// Arguments it must have for the refusal to apply: (index, value of the low 32 bits).
    pub args: &'static [(usize, u32)],
    /// What it fails with.
    pub errno: i32,
}

/// Where `seccomp_data` holds the low word of argument `index`: the arguments are 64-bit
/// words after `nr`, `arch` and the instruction pointer (16 bytes), and a word's low half
/// is its second on a big-endian target.
fn arg_offset(index: usize) -> u32 {
    let low_half = if cfg!(target_endian = "big") { 4 } else { 0 };
    16 + 8 * index as u32 + low_half
}

fn op(code: u32, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// The filter: for each refusal, a block that compares the number and then each argument,
/// jumping to the next block at the first mismatch and failing the call at the end; after
/// the last block, everything else is allowed.
fn filter(refusals: &[Refusal]) -> Vec<libc::sock_filter> {
    let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let equal = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    let ret = libc::BPF_RET | libc::BPF_K;
    let mut program = Vec::new();
    for refusal in refusals {
        let checks: Vec<(u32, u32)> = std::iter::once((0, refusal.syscall as u32))
            .chain(refusal.args.iter().map(|&(i, v)| (arg_offset(i), v)))
            .collect();
        // Two instructions per check, then the return: a mismatch skips what is left.
        let block = checks.len() * 2 + 1;
        for (n, (offset, value)) in checks.into_iter().enumerate() {
            let left = block - (n * 2 + 2);
            program.push(op(load, 0, 0, offset));
            program.push(op(equal, 0, left as u8, value));
        }
        program.push(op(
            ret,
            0,
            0,
            libc::SECCOMP_RET_ERRNO | refusal.errno as u32,
        ));
    }
    program.push(op(ret, 0, 0, libc::SECCOMP_RET_ALLOW));
    program
}

/// Makes `cmd`'s process fail `refusals` from its first instruction on.
pub fn refuse(cmd: &mut Command, refusals: &[Refusal]) {
    // Built here: between fork and exec the child may not allocate.
    let mut program = filter(refusals);
    // SAFETY: the closure makes two prctl calls on the filter it owns, which outlives them;
    // it allocates nothing and touches no lock.
    unsafe {
        cmd.pre_exec(move || {
            let fprog = libc::sock_fprog {
                len: program.len() as u16,
                filter: program.as_mut_ptr(),
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &fprog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
