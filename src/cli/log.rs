//! Where the library's `tracing` events go: stderr, as plain lines or (`--log-format json`)
//! one JSON object per line with the fields of SPEC §3.5 (`ts`, `level`, `msg`, then the
//! event's own fields such as `peer`, `listener`, `bytes_in`, `duration_ms`).

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::sync::OnceLock;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use super::args::{LogArgs, LogFormat};
use super::exit::sanitize;
use super::stderr;

/// The format `init` chose, for the notices written beside the library's events.
static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Sends the library's events to stderr at the level `-v`/`-q` ask for, in the chosen format.
pub(crate) fn init(log: &LogArgs) {
    let _ = FORMAT.set(log.log_format);
    stderr::start(dropped_line);
    let level = match (log.quiet, log.verbose) {
        (true, _) => tracing::Level::ERROR,
        (false, 0) => tracing::Level::INFO,
        (false, 1) => tracing::Level::DEBUG,
        (false, _) => tracing::Level::TRACE,
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(|| LossyStderr)
        .with_max_level(level);
    match log.log_format {
        LogFormat::Text => builder
            .fmt_fields(OneLineFields)
            .with_target(false)
            .with_ansi(colour(
                std::io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR"),
                std::env::var_os("TERM"),
            ))
            .without_time()
            .init(),
        LogFormat::Json => builder.event_format(JsonLines).init(),
    }
}

/// Whether the log's levels are coloured: only on a terminal (`stderr_is_terminal`), and
/// not when `NO_COLOR` is set to anything but the empty string (<https://no-color.org>) or
/// the terminal is `TERM=dumb`, which has no escape sequences.
pub(crate) fn colour(
    stderr_is_terminal: bool,
    no_color: Option<std::ffi::OsString>,
    term: Option<std::ffi::OsString>,
) -> bool {
    stderr_is_terminal
        && no_color.is_none_or(|value| value.is_empty())
        && term.is_none_or(|term| term != "dumb")
}

/// Writes a notice the user needs whatever the level (`-q` included), as the readiness lines
/// are: a plain line, or with `--log-format json` an object like an event's, with `fields`
/// beside `msg`, so that every line but `listening on` parses.
pub(crate) fn notice(msg: &str, fields: &[(&str, Value)]) {
    let line = match FORMAT.get() {
        Some(LogFormat::Json) => our_json_line("info", msg, fields),
        _ => sanitize(msg),
    };
    stderr::write(format!("{line}\n").as_bytes(), stderr::Line::Notice);
}

/// A line of ours written beside the library's events in the JSON format: an object like an
/// event's, with `fields` beside `msg`.
fn our_json_line(level: &str, msg: &str, fields: &[(&str, Value)]) -> String {
    let mut object = json_object(level, msg);
    for (name, value) in fields {
        object.insert((*name).to_owned(), value.clone());
    }
    Value::Object(object).to_string()
}

/// Says that `count` events were dropped because stderr was not read fast enough (or failed:
/// a full disk), as a warning in the log's format.
fn dropped_line(count: u64) -> String {
    let msg = format!(
        "{count} log line(s) dropped: standard error was not read fast enough, or could not \
         be written"
    );
    match FORMAT.get() {
        Some(LogFormat::Json) => our_json_line("warn", &msg, &[("dropped", count.into())]) + "\n",
        _ => format!(" WARN {msg}\n"),
    }
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// Standard error that drops what it cannot write. A server whose log reader has gone
/// (`serve 2>&1 | head -1`, a supervisor that closed the pipe) or stopped reading must go
/// on serving and still shut down on SIGTERM: the events go through [`stderr`]'s queue,
/// which a full pipe does not hold up, and which drops what does not fit. Never an error:
/// given one, tracing-subscriber reports it with `eprintln!`, which panics on a closed
/// stderr, in whichever task was logging (the shutdown's own, once: the server then never
/// stopped).
struct LossyStderr;

impl Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // tracing-subscriber hands over one whole event per call.
        stderr::write(buf, stderr::Line::Event);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The text format's fields (the message among them), one event to a line whatever the
/// values hold: a value is often a peer's address, and a Unix client names its own socket,
/// so a path with a newline in it would otherwise start a line of its own that reads as
/// another event, and one with a space or a `"` would add fields of its own choosing
/// (`peer=/x error="…" bytes_in=9`) to a logfmt reader. A value that is not a plain word is
/// quoted with its `\`, `"` and control characters escaped (`peer="/tmp/a b.sock"`); the
/// message has its control characters escaped. Only the fields are escaped, not the level
/// before them, whose colour on a terminal is an escape sequence of ours. JSON needs none
/// of this: serde_json escapes every string.
struct OneLineFields;

impl<'writer> FormatFields<'writer> for OneLineFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut text = TextFields(String::new());
        fields.record(&mut text);
        writer.write_str(&text.0)
    }
}

/// Writes an event's fields as `message name=value …` (see [`OneLineFields`]).
struct TextFields(String);

impl TextFields {
    fn separate(&mut self) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
    }
}

impl Visit for TextFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.separate();
        if field.name() == "message" {
            self.0.push_str(&sanitize(value));
        } else {
            self.0.push_str(&format!("{}={value:?}", field.name()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        self.separate();
        if field.name() == "message" {
            return self.0.push_str(&sanitize(&text));
        }
        self.0.push_str(field.name());
        self.0.push('=');
        let plain = !text.is_empty()
            && text
                .chars()
                .all(|c| !c.is_whitespace() && !c.is_control() && !matches!(c, '"' | '=' | '\\'));
        if plain {
            self.0.push_str(&text);
        } else {
            self.0.push_str(&format!("{text:?}"));
        }
    }
}

/// One JSON object per event, fields flattened beside `ts`, `level` and `msg`.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        writeln!(writer, "{}", json_line(event))
    }
}

fn json_line(event: &Event<'_>) -> Value {
    let level = event.metadata().level().as_str().to_ascii_lowercase();
    let mut object = json_object(&level, "");
    event.record(&mut Fields(&mut object));
    Value::Object(object)
}

/// What every JSON line starts with (SPEC §3.5): `ts`, `level` and `msg`.
fn json_object(level: &str, msg: &str) -> Map<String, Value> {
    let mut object = Map::new();
    object.insert("ts".into(), now_rfc3339().into());
    object.insert("level".into(), level.into());
    object.insert("msg".into(), msg.into());
    object
}

/// Collects an event's fields; `message` becomes `msg`.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Fields<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        let name = match field.name() {
            "message" => "msg",
            name => name,
        };
        self.0.insert(name.to_owned(), value);
    }
}

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
}
