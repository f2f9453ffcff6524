//! The tutorial's `client.py`, line for line, on `socketkit::socket`: connect to port 12345
//! of this host, print what the server sends (`你好`), close.
//!
//! Start a server first (`cargo run --example server`, or `cargo run --release -- serve`),
//! then:
//!
//! ```text
//! cargo run --example client            # or: cargo run --example client -- 127.0.0.1 12345
//! ```
//!
//! | client.py | here |
//! |---|---|
//! | `s = socket.socket()` | `let s = Socket::new(Family::Inet, Type::Stream)?;` |
//! | `host = socket.gethostname()` | `let host = socket::gethostname()?;` |
//! | `s.connect((host, port))` | `s.connect((host.as_str(), port))?;` |
//! | `print s.recv(1024)` | `println!("{}", String::from_utf8_lossy(&s.recv(1024)?));` |
//! | `s.close()` | `s.close();` |

use std::process::ExitCode;

use socketkit::socket::{Family, Socket, Type};

#[path = "shared/tutorial_args.rs"]
mod tutorial_args;
use tutorial_args::host_and_port;

fn main() -> ExitCode {
    match talk() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn talk() -> socketkit::Result<()> {
    let (host, port) = host_and_port()?;

    let s = Socket::new(Family::Inet, Type::Stream)?; // 创建 socket 对象
    s.connect((host.as_str(), port))?;
    println!("{}", String::from_utf8_lossy(&s.recv(1024)?));
    s.close();
    Ok(())
}
