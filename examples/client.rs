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

use socketkit::socket::{self, Family, Socket, Type};

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

/// `HOST PORT` from the command line, or the tutorial's `gethostname()` and 12345.
fn host_and_port() -> socketkit::Result<(String, u16)> {
    let mut args = std::env::args().skip(1);
    let host = match args.next() {
        Some(host) => host,
        None => socket::gethostname()?, // 获取本地主机名
    };
    let port = match args.next() {
        Some(text) => text.parse().map_err(|_| bad_port(&text))?,
        None => 12345, // 设置端口
    };
    Ok((host, port))
}

fn bad_port(text: &str) -> socketkit::Error {
    let reason = std::io::Error::new(std::io::ErrorKind::InvalidInput, "port must be 0-65535");
    socketkit::Error::new(
        socketkit::error::Op::Connect,
        format!("port '{text}'"),
        reason,
    )
}
