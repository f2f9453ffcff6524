//! The optional `HOST PORT` arguments of the tutorial's programs (not in the tutorial, which
//! always uses `gethostname()` and 12345; tests need port 0 and 127.0.0.1).

use socketkit::socket;

/// `HOST PORT` from the command line, or `gethostname()` and 12345.
pub(crate) fn host_and_port() -> socketkit::Result<(String, u16)> {
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
        socketkit::error::Op::Resolve,
        format!("port '{text}'"),
        reason,
    )
}
