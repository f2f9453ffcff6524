//! A server written the way the tutorial writes code — plain blocking `read` and `write` —
//! served concurrently: each connection runs on a thread of a bounded pool (16 here), so a
//! slow client holds up only its own thread. A client that connects and says nothing holds
//! one too: the idle limit (30 s) frees it, without which 16 silent clients would stop the
//! server for everyone else.
//!
//! The handler answers each line with its length:
//!
//! ```text
//! cargo run --example blocking_handler               # listens on 127.0.0.1:12345
//! printf 'hello\nworld!\n' | nc -N 127.0.0.1 12345   # prints 5, then 6
//! ```

use std::process::ExitCode;
use std::time::Duration;

use std::io::{BufRead, BufReader, Write};

use socketkit::server::{BlockingConnection, Server};

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
    builder
        .listen(endpoint)
        .blocking_threads(16)
        .idle_timeout(Duration::from_secs(30));
    let server = builder.bind().await?;
    eprintln!("listening on {}", server.local_endpoints()[0]);

    server
        .serve_blocking(|conn: BlockingConnection| {
            let mut reader = BufReader::new(conn);
            let mut line = String::new();
            while reader.read_line(&mut line)? > 0 {
                let length = line.trim_end_matches('\n').chars().count();
                writeln!(reader.get_mut(), "{length}")?;
                line.clear();
            }
            Ok(())
        })
        .await
}
