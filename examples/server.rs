//! The tutorial's `server.py`, line for line, on `socketkit::socket`: listen on port 12345 of
//! this host, and send `你好` to each client that connects.
//!
//! Run it, then the client in a second terminal:
//!
//! ```text
//! cargo run --example server            # or: cargo run --example server -- 127.0.0.1 12345
//! cargo run --example client
//! ```
//!
//! | server.py | here |
//! |---|---|
//! | `s = socket.socket()` | `let s = Socket::new(Family::Inet, Type::Stream)?;` |
//! | (not in the tutorial) `s.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)` | `s.set_reuse_address(true)?;` |
//! | `host = socket.gethostname()` | `let host = socket::gethostname()?;` |
//! | `s.bind((host, port))` | `s.bind((host.as_str(), port))?;` |
//! | `s.listen(5)` | `s.listen(5)?;` |
//! | `c, addr = s.accept()` | `let (c, addr) = s.accept()?;` |
//! | `c.send('你好')` | `c.sendall("你好".as_bytes())?;` |
//! | `c.close()` | `c.close();` |

use std::process::ExitCode;

use socketkit::socket::{Family, Socket, Type};

#[path = "shared/tutorial_args.rs"]
mod tutorial_args;
use tutorial_args::host_and_port;

fn main() -> ExitCode {
    match serve() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn serve() -> socketkit::Result<()> {
    let (host, port) = host_and_port()?;

    let s = Socket::new(Family::Inet, Type::Stream)?; // 创建 socket 对象
    // Not in the tutorial: the server closes each connection first, so its side of it waits
    // in TIME_WAIT for a minute, and without SO_REUSEADDR a server started again in that
    // minute fails with "address already in use".
    s.set_reuse_address(true)?;
    s.bind((host.as_str(), port))?; // 绑定端口
    s.listen(5)?; // 等待客户端连接
    // Not in the tutorial: say where we listen, so that port 0 can be used and found.
    eprintln!("listening on tcp:{}", s.local_addr()?);
    loop {
        let (c, addr) = s.accept()?; // 建立客户端连接
        println!("连接地址： {addr}");
        // send() could send part of a long message; sendall() sends it all.
        c.sendall("你好".as_bytes())?;
        c.close(); // 关闭连接
    }
}
