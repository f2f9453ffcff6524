//! `serve exec` hands its program a TCP socket with Nagle's algorithm off, as `listen -e`
//! does: a program that answers in pieces (a line, then a prompt) would otherwise see each
//! piece after the first wait for the client's delayed acknowledgement, ~40 ms a round.
//! Found by an outside audit of socketkit in real dialogs.

use std::io::{BufRead, BufReader, Write};

use crate::support::net::connect;
use crate::support::process::{Running, socketkit};

/// The program reads `TCP_NODELAY` of its own stdout (the socket), then answers each line
/// in two writes, as a prompt-driven program does.
const PROGRAM: &str = "\
import socket, sys
s = socket.socket(fileno=__import__('os').dup(1))
sys.stdout.write('nodelay=%d\\n' % s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
sys.stdout.flush()
for line in sys.stdin:
    sys.stdout.write('got ' + line); sys.stdout.flush()
    sys.stdout.write('> '); sys.stdout.flush()
";

#[test]
fn the_programs_tcp_socket_has_nagle_off() {
    let mut cmd = socketkit();
    cmd.args([
        "serve",
        "exec",
        "-l",
        "127.0.0.1:0",
        "--",
        "python3",
        "-u",
        "-c",
        PROGRAM,
    ]);
    let server = Running::start(cmd, 1);
    let mut stream = connect(&server.addr());
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    reader.read_line(&mut line).expect("first line");
    assert_eq!(line, "nodelay=1\n");
    // And the dialog works piece by piece: each answer's prompt comes without the next
    // line being sent first.
    for word in ["one", "two"] {
        stream
            .write_all(format!("{word}\n").as_bytes())
            .expect("write");
        line.clear();
        reader.read_line(&mut line).expect("answer");
        assert_eq!(line, format!("got {word}\n"));
        let mut prompt = [0u8; 2];
        std::io::Read::read_exact(&mut reader, &mut prompt).expect("prompt");
        assert_eq!(&prompt, b"> ");
    }
}
