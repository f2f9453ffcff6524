//! The pipes between an exec program and its connection, where the socket cannot be handed
//! over (a TLS session, a Unix connection under an idle timeout): socketkit copies both
//! ways, with the half-closes a program on the socket itself would make.

use std::io;

use tokio::io::AsyncWriteExt;
use tokio::process::Child;

use crate::net::{Activity, Touching};
use crate::server::Connection;

/// Copies the socket to the program's stdin and its stdout to the socket until both have
/// ended, or the connection fails. The client's end of stream closes the program's stdin;
/// the program's closing stdout half-closes the connection (a TLS session's close_notify)
/// and the client's bytes go on to its stdin until the client ends too, or the program
/// exits and nothing would read them — as when the program holds the socket itself.
pub(super) async fn bridge(child: &mut Child, mut conn: Connection) -> io::Result<()> {
    let result = copy_both_ways(child, &mut conn).await;
    if let Err(err) = &result
        && crate::net::is_idle_timeout(err)
    {
        // The watchdog's, which no read or write of the connection noted: the closing line
        // says the connection was cut, not that it ended (and a cut with output still on
        // its way resets).
        conn.failed(err);
    }
    result
}

/// [`bridge`]'s copies, with `conn` lent to them.
async fn copy_both_ways(child: &mut Child, conn: &mut Connection) -> io::Result<()> {
    let (Some(mut stdin), Some(mut stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(io::Error::other("the program's stdio was not piped"));
    };
    // The connection's own idle timer is looked at only when it is read or written, and a
    // program that stopped reading leaves both copies waiting on its pipes: the watchdog
    // over the client's bytes both ways ends the connection at the limit.
    let limit = conn.idle_limit();
    let activity = Activity::new();
    let activity = &activity;
    let (mut from_client, mut to_client) = tokio::io::split(conn);
    let input = async move {
        let mut from_client = Touching::new(&mut from_client, activity);
        let copied = tokio::io::copy(&mut from_client, &mut stdin).await;
        drop(stdin); // the client's end of stream is the program's
        copied
    };
    let output = async move {
        let mut to_client = Touching::new(&mut to_client, activity);
        tokio::io::copy(&mut stdout, &mut to_client).await?;
        to_client.shutdown().await
    };
    tokio::pin!(input, output);
    let (mut input_done, mut output_done) = (false, false);
    let copies = async {
        while !(input_done && output_done) {
            tokio::select! {
                result = &mut input, if !input_done => {
                    input_done = true;
                    match result {
                        // The program stopped reading (closed stdin or exited): not an
                        // error for the connection; its output decides the end.
                        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => {}
                        Err(err) => return Err(err),
                        Ok(_) => {}
                    }
                }
                result = &mut output, if !output_done => {
                    result?;
                    output_done = true;
                }
                // Its output ended, and now the program: what the client still sends has no
                // reader (the close resets, as the program's own close of the socket would).
                _ = child.wait(), if output_done && !input_done => input_done = true,
            }
        }
        Ok(())
    };
    crate::net::unless_idle(limit, activity, copies).await
}
