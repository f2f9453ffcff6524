//! Which `bench` options and endpoints each mode uses: a run that cannot be done (idle on a
//! datagram endpoint) or an option given for a mode that would ignore it is bad usage,
//! refused before anything runs, rather than a run that measures something else.

use socketkit::bench::Mode;
use socketkit::endpoint::Endpoint;

use super::args::BenchArgs;
use super::exit::CliError;
use super::given::Given;

/// Refuses a mode the endpoint cannot carry and any option given (on the command line:
/// defaults are not given) that `mode` does not use on `endpoint`.
pub(crate) fn check(
    args: &BenchArgs,
    given: &Given,
    mode: Mode,
    endpoint: &Endpoint,
) -> Result<(), CliError> {
    let datagram = !endpoint.transport().is_stream();
    if mode == Mode::Idle && datagram {
        return Err(CliError::Usage(format!(
            "--mode idle holds stream connections (tcp:, tls:, unix:), and {endpoint} is a \
             datagram endpoint"
        )));
    }
    for (option, given) in given_options(args, given) {
        if let Some(why) = unused(option, mode, datagram).filter(|_| given) {
            // Named only where the endpoint's kind decides.
            let on = match (unused(option, mode, !datagram).is_none(), datagram) {
                (true, true) => format!(" on a datagram endpoint ({endpoint})"),
                (true, false) => format!(" on a stream endpoint ({endpoint})"),
                (false, _) => String::new(),
            };
            return Err(CliError::Usage(format!(
                "{option} does not apply to --mode {}{on}: {why}",
                mode.name()
            )));
        }
    }
    Ok(())
}

/// The mode-specific options, each with whether it was given.
fn given_options(args: &BenchArgs, given: &Given) -> [(&'static str, bool); 7] {
    [
        ("--size", given.contains("size")),
        ("--window", args.window.is_some()),
        ("--expect", args.expect.is_some()),
        ("--expect-hex", args.expect_hex.is_some()),
        ("--rate", args.rate.is_some()),
        // `--warmup 0` asks for what idle does anyway.
        (
            "--warmup",
            given.contains("warmup") && !args.warmup.is_zero(),
        ),
        ("--server-pid", args.server_pid.is_some()),
    ]
}

/// Why `option` means nothing to `mode` (on a datagram endpoint if `datagram`); `None`
/// where the mode uses it.
fn unused(option: &str, mode: Mode, datagram: bool) -> Option<&'static str> {
    match (option, mode, datagram) {
        ("--size", Mode::Echo, _) | ("--size", Mode::Greeting, true) => None,
        ("--size", ..) => Some(
            "it is the size of echo's blocks and of the datagram a greeting sends to a \
             udp: or unixgram: endpoint",
        ),
        ("--window", Mode::Echo, false) => None,
        ("--window", ..) => Some("it is the bytes in flight of an echo stream connection"),
        ("--expect" | "--expect-hex", Mode::Greeting, _) => None,
        ("--expect" | "--expect-hex", ..) => Some(
            "it is what every greeting answer must be (echo checks that its own bytes come \
             back)",
        ),
        ("--rate", Mode::Greeting, _) | ("--rate", Mode::Echo, true) => None,
        ("--rate", ..) => Some(
            "it paces greeting connections and datagram requests; echo keeps its stream \
             connections busy, idle holds its connections",
        ),
        ("--warmup", Mode::Idle, _) => {
            Some("idle opens its connections once and counts all of them, with no warm-up")
        }
        ("--server-pid", Mode::Idle, _) => None,
        ("--server-pid", ..) => Some("it measures the server's memory per held connection"),
        _ => None,
    }
}
