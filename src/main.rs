//! `socketkit`: serve, connect, listen, forward and load-test from the command line.
//! Parsing, dispatch and exit codes live in [`cli`]; the work is the library's.

mod cli;

use std::process::ExitCode;

// jemalloc's size classes fit the runtime's 128-byte-aligned task and I/O registration
// blocks exactly, where the system's malloc pads each aligned block: an idle connection of
// the epoll engine costs 0.53 KiB instead of 0.87 (docs/benchmarks.md). The library leaves
// the choice to the program that links it.
#[cfg(all(unix, feature = "jemalloc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    cli::run()
}
