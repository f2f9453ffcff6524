//! A UDP echo server: each datagram is answered with itself. Datagram handlers are plain
//! closures that get the payload, the sender, and a `Reply` to answer through.
//!
//! ```text
//! cargo run --example udp_echo                  # listens on udp:127.0.0.1:12345
//! echo hello | nc -u -w1 127.0.0.1 12345        # prints hello
//! ```

use std::process::ExitCode;

use socketkit::server::{Reply, Server};
use socketkit::socket::Address;

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
    let endpoint = endpoint_arg("udp:127.0.0.1:12345");
    let mut builder = Server::builder();
    builder.listen(endpoint);
    let server = builder.bind().await?;
    eprintln!("listening on {}", server.local_endpoints()[0]);

    server
        .serve_datagrams(|payload: &[u8], peer: &Address, reply: &mut Reply| {
            println!("{} bytes from {peer}", payload.len());
            reply.send(payload);
            Ok(())
        })
        .await
}
