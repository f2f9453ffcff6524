//! An echo server in a few lines of `socketkit::server`: every byte a client sends comes
//! back, until it closes.
//!
//! ```text
//! cargo run --example echo_server                 # listens on 127.0.0.1:12345
//! cargo run --release -- connect 127.0.0.1:12345  # type lines, see them echoed
//! ```
//!
//! An optional argument picks another endpoint: `cargo run --example echo_server -- :7007`.

use std::process::ExitCode;

use socketkit::server::{Connection, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "shared/endpoint_arg.rs"]
mod endpoint_arg;
use endpoint_arg::endpoint_arg;
#[path = "shared/outcome.rs"]
mod outcome;
use outcome::outcome;

#[tokio::main]
async fn main() -> ExitCode {
    outcome(run().await)
}

async fn run() -> socketkit::Result<()> {
    let endpoint = endpoint_arg("127.0.0.1:12345");
    let mut builder = Server::builder();
    builder.listen(endpoint);
    let server = builder.bind().await?;
    eprintln!("listening on {}", server.local_endpoints()[0]);

    server
        .serve(|mut conn: Connection| async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = conn.read(&mut buf).await?;
                if n == 0 {
                    return conn.shutdown().await; // the client is done: so are we
                }
                conn.write_all(&buf[..n]).await?;
            }
        })
        .await
}
