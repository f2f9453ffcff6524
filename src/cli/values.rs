//! The value parsers of every numeric option, in one place: whole numbers, decimal numbers,
//! durations and octal modes, each with the range the option allows, and certificate
//! fingerprints. A value out of range is refused by clap (exit 2) with one line naming the
//! option and the range, as wrk, iperf3 and ab do: `invalid value '0' for --connections:
//! must be a whole number from 1 to 1000000`.
//!
//! The text parsers ([`parse_whole`], [`parse_decimal`], [`parse_duration`], [`parse_mode`])
//! are plain functions, so the property tests below feed them arbitrary strings; [`Checked`]
//! makes each a clap value parser with the same message shape.

use std::ffi::OsStr;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::error::ErrorKind;
use socketkit::tls::{Fingerprint, NotAFingerprint};

/// The longest duration any option takes. A bound, not a convenience: durations are added
/// to each other and to `Instant::now()`, which panics on overflow.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// [`MAX_DURATION`] as the messages write it (and as the parser reads it back).
const MAX_DURATION_TEXT: &str = "365d";

/// An option's check: what kind of value it takes (for the message) and its parser.
pub(crate) trait Check: Clone + Send + Sync + 'static {
    /// What the value is converted to.
    type Value: Clone + Send + Sync + 'static;
    /// The kind of value, as the message names it: `value`, `duration`, `mode`.
    const WHAT: &'static str;
    /// The value of `text`, or why not.
    fn check(&self, text: &str) -> Result<Self::Value, Refused>;
}

/// A [`Check`] as a clap value parser: every option's refusal has the same shape.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Checked<C>(C);

/// A whole number from `min` to `max`, converted to `T`.
#[derive(Debug)]
pub(crate) struct Whole<T> {
    min: u64,
    max: u64,
    into: PhantomData<fn() -> T>,
}

// Derived `Clone`/`Copy` would ask the same of `T`, which `PhantomData<fn() -> T>` does not need.
impl<T> Clone for Whole<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Whole<T> {}

/// A whole-number option from `min` to `max` (both included).
///
/// # Panics
///
/// If `max` does not fit `T`: a mistake in `args.rs`, which the `every_option_parses`
/// test (it builds every option) catches.
pub(crate) fn whole<T: TryFrom<u64>>(min: u64, max: u64) -> Checked<Whole<T>> {
    assert!(
        T::try_from(max).is_ok(),
        "{max} does not fit the option's type"
    );
    Checked(Whole {
        min,
        max,
        into: PhantomData,
    })
}

/// A decimal number from `min` to `max` (both included).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Decimal {
    min: f64,
    max: f64,
}

/// A decimal-number option from `min` to `max`.
pub(crate) fn decimal(min: f64, max: f64) -> Checked<Decimal> {
    Checked(Decimal { min, max })
}

/// A duration from `min` to [`MAX_DURATION`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    min: Duration,
}

/// A duration option that may be zero (`--wait 0`: do not wait).
pub(crate) fn duration_or_zero() -> Checked<Span> {
    Checked(Span {
        min: Duration::ZERO,
    })
}

/// A duration option of at least a millisecond (a timeout of zero would give up at once).
pub(crate) fn duration() -> Checked<Span> {
    Checked(Span {
        min: Duration::from_millis(1),
    })
}

/// File permission bits in octal, as chmod takes them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mode;

/// An octal-mode option.
pub(crate) fn mode() -> Checked<Mode> {
    Checked(Mode)
}

/// Why a value was refused: what kind of value it should be, and its range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused(pub(crate) String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A port, or a range of them `LOW-HIGH` (`connect -z HOST 20-30`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ports;

/// A port-or-range argument.
pub(crate) fn ports() -> Checked<Ports> {
    Checked(Ports)
}

/// A PORT word of `connect`: its ports, and whether it was written as a range (`80-80` is a
/// range of one port, which `-z` scans as it scans any range).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PortWord {
    pub(crate) ports: std::ops::RangeInclusive<u16>,
    pub(crate) range: bool,
}

impl fmt::Display for PortWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.range {
            write!(f, "{}-{}", self.ports.start(), self.ports.end())
        } else {
            write!(f, "{}", self.ports.start())
        }
    }
}

impl Check for Ports {
    type Value = PortWord;
    const WHAT: &'static str = "value";

    fn check(&self, text: &str) -> Result<Self::Value, Refused> {
        Ok(PortWord {
            ports: parse_ports(text)?,
            // Only a range holds a '-' and parses.
            range: text.contains('-'),
        })
    }
}

/// `text` as a port from 1 to 65535, or a range `LOW-HIGH` of them (LOW at most HIGH).
pub(crate) fn parse_ports(text: &str) -> Result<std::ops::RangeInclusive<u16>, Refused> {
    let refused = || Refused("must be a port from 1 to 65535, or a range LOW-HIGH of them".into());
    let port = |text: &str| {
        parse_whole(text, 1, 65_535)
            .ok()
            .and_then(|n| u16::try_from(n).ok())
    };
    let (low, high) = match text.split_once('-') {
        Some((low, high)) => (port(low), port(high)),
        None => (port(text), port(text)),
    };
    match (low, high) {
        (Some(low), Some(high)) if low <= high => Ok(low..=high),
        (Some(low), Some(high)) => Err(Refused(format!(
            "the range {low}-{high} is reversed: LOW comes first ({high}-{low})"
        ))),
        _ => Err(refused()),
    }
}

/// `text` as a whole number from `min` to `max`.
pub(crate) fn parse_whole(text: &str, min: u64, max: u64) -> Result<u64, Refused> {
    match text.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(Refused(format!(
            "must be a whole number from {min} to {max}"
        ))),
    }
}

/// `text` as a decimal number from `min` to `max` (no NaN, no infinity).
pub(crate) fn parse_decimal(text: &str, min: f64, max: f64) -> Result<f64, Refused> {
    match text.parse::<f64>() {
        Ok(x) if (min..=max).contains(&x) => Ok(x),
        _ => Err(Refused(format!("must be a number from {min} to {max}"))),
    }
}

/// A humane duration (`500ms`, `30s`, `2m`, `1h 30m`; a bare number is seconds, as
/// `timeout 5` and `nc -w 5` take it) from `min` to [`MAX_DURATION`].
pub(crate) fn parse_duration(text: &str, min: Duration) -> Result<Duration, Refused> {
    let out_of_range = || {
        let low = if min.is_zero() {
            "0".to_owned()
        } else {
            humantime::format_duration(min).to_string()
        };
        Refused(format!("must be from {low} to {MAX_DURATION_TEXT}"))
    };
    let parsed = match text.parse::<f64>() {
        // A number that is no duration (negative, NaN, past u64 seconds) is out of range.
        Ok(seconds) => Duration::try_from_secs_f64(seconds).map_err(|_| out_of_range())?,
        Err(_) if text.trim_start().starts_with('-') => return Err(out_of_range()),
        Err(_) => humantime::parse_duration(text).map_err(|_| {
            Refused(format!(
                "expected a duration such as 500ms, 30s or 2m, {}",
                out_of_range().0.trim_start_matches("must be ")
            ))
        })?,
    };
    if parsed < min || parsed > MAX_DURATION {
        return Err(out_of_range());
    }
    Ok(parsed)
}

/// Permission bits in octal, at most `7777`.
pub(crate) fn parse_mode(text: &str) -> Result<u32, Refused> {
    let digits = !text.is_empty() && text.bytes().all(|b| (b'0'..=b'7').contains(&b));
    match u32::from_str_radix(text, 8) {
        Ok(mode) if digits && mode <= 0o7777 => Ok(mode),
        _ => Err(Refused(
            "expected octal permission bits from 0 to 7777, such as 660".to_owned(),
        )),
    }
}

impl<T: TryFrom<u64> + Clone + Send + Sync + 'static> Check for Whole<T> {
    type Value = T;
    const WHAT: &'static str = "value";

    fn check(&self, text: &str) -> Result<T, Refused> {
        let n = parse_whole(text, self.min, self.max)?;
        // `whole` made sure `max` fits `T`, and `n` is at most `max`; the error is moot.
        T::try_from(n).map_err(|_| Refused(String::new()))
    }
}

impl Check for Decimal {
    type Value = f64;
    const WHAT: &'static str = "value";

    fn check(&self, text: &str) -> Result<f64, Refused> {
        parse_decimal(text, self.min, self.max)
    }
}

impl Check for Span {
    type Value = Duration;
    const WHAT: &'static str = "duration";

    fn check(&self, text: &str) -> Result<Duration, Refused> {
        parse_duration(text, self.min)
    }
}

impl Check for Mode {
    type Value = u32;
    const WHAT: &'static str = "mode";

    fn check(&self, text: &str) -> Result<u32, Refused> {
        parse_mode(text)
    }
}

/// A certificate's SHA-256 fingerprint (`--tls-fingerprint`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pin;

/// A fingerprint option.
pub(crate) fn fingerprint() -> Checked<Pin> {
    Checked(Pin)
}

impl Check for Pin {
    type Value = Fingerprint;
    const WHAT: &'static str = "fingerprint";

    fn check(&self, text: &str) -> Result<Fingerprint, Refused> {
        text.parse()
            .map_err(|err: NotAFingerprint| Refused(err.to_string()))
    }
}

impl<C: Check> TypedValueParser for Checked<C> {
    type Value = C::Value;

    /// One line, `invalid WHAT 'VALUE' for --OPTION: WHY`. A value that is not UTF-8 is
    /// checked as its lossy text, which no parser accepts, so it gets the same message.
    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<C::Value, clap::Error> {
        let text = value.to_string_lossy();
        self.0.check(&text).map_err(|why| {
            let name = arg.map_or_else(
                || "the option".to_owned(),
                |arg| match (arg.get_long(), arg.get_short()) {
                    (Some(long), _) => format!("--{long}"),
                    (None, Some(short)) => format!("-{short}"),
                    (None, None) => arg.get_id().to_string(),
                },
            );
            clap::Error::raw(
                ErrorKind::ValueValidation,
                format!("invalid {} '{text}' for {name}: {why}\n", C::WHAT),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn durations_are_humane_and_bounded() {
        let zero = Duration::ZERO;
        assert_eq!(
            parse_duration("500ms", zero),
            Ok(Duration::from_millis(500))
        );
        assert_eq!(parse_duration("2m", zero), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5", zero), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0", zero), Ok(zero));
        let ms = Duration::from_millis(1);
        for bad in ["0", "-1", "-1s", "366d", "1e300", "NaN", "inf"] {
            assert_eq!(
                parse_duration(bad, ms),
                Err(Refused("must be from 1ms to 365d".into())),
                "{bad}"
            );
        }
        let err = parse_duration("5x", ms).unwrap_err().0;
        assert_eq!(
            err,
            "expected a duration such as 500ms, 30s or 2m, from 1ms to 365d"
        );
        assert_eq!(parse_duration(MAX_DURATION_TEXT, ms), Ok(MAX_DURATION));
    }

    #[test]
    fn ports_and_ranges_have_one_message_but_a_reversed_range() {
        assert_eq!(parse_ports("80"), Ok(80..=80));
        assert_eq!(parse_ports("20-30"), Ok(20..=30));
        let one = Ports
            .check("80-80")
            .map(|word| (word.range, word.to_string()));
        assert_eq!(one, Ok((true, "80-80".to_owned())));
        assert_eq!(Ports.check("80").map(|word| word.range), Ok(false));
        assert_eq!(
            parse_ports("30-20"),
            Err(Refused(
                "the range 30-20 is reversed: LOW comes first (20-30)".into()
            ))
        );
        for bad in ["0", "65536", "-5", "5-", "1-2-3", "", "a-b", "0-10"] {
            assert_eq!(
                parse_ports(bad),
                Err(Refused(
                    "must be a port from 1 to 65535, or a range LOW-HIGH of them".into()
                )),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn whole_numbers_have_one_message() {
        assert_eq!(parse_whole("64", 1, 100), Ok(64));
        for bad in ["0", "101", "-1", "", " 5", "5.0", "99999999999999999999999"] {
            assert_eq!(
                parse_whole(bad, 1, 100),
                Err(Refused("must be a whole number from 1 to 100".into())),
                "{bad:?}"
            );
        }
    }

    /// Builds every option of the command line (so every `whole` range is checked against
    /// its type) and runs clap's own consistency checks.
    #[test]
    fn every_option_parses() {
        use clap::CommandFactory;
        super::super::args::Cli::command().debug_assert();
    }

    #[test]
    fn every_mode_round_trips() {
        for mode in 0..=0o7777u32 {
            assert_eq!(parse_mode(&format!("{mode:o}")), Ok(mode));
            assert_eq!(parse_mode(&format!("{mode:04o}")), Ok(mode));
        }
        for bad in ["", "9", "10000", "+660", "-1", "0x1ff", "66 0"] {
            assert!(parse_mode(bad).is_err(), "{bad:?}");
        }
    }

    /// 4096 cases a run (thousands in CI); `PROPTEST_CASES=1000000` for a long hunt.
    fn cases() -> ProptestConfig {
        let mut config = ProptestConfig::default();
        if std::env::var_os("PROPTEST_CASES").is_none() {
            config.cases = 4096;
        }
        config
    }

    proptest! {
        #![proptest_config(cases())]

        #[test]
        fn prop_parsers_never_panic(text in any::<String>()) {
            let _ = parse_whole(&text, 1, 1000);
            let _ = parse_decimal(&text, 0.001, 1e6);
            let _ = parse_duration(&text, Duration::ZERO);
            let _ = parse_mode(&text);
            let _ = parse_ports(&text);
        }

        #[test]
        fn prop_port_ranges_round_trip(low in 1u16.., high in 1u16..) {
            let parsed = parse_ports(&format!("{low}-{high}"));
            if low <= high {
                prop_assert_eq!(parsed, Ok(low..=high));
            } else {
                prop_assert!(parsed.is_err());
            }
            prop_assert_eq!(parse_ports(&low.to_string()), Ok(low..=low));
        }

        #[test]
        fn prop_parsers_never_panic_on_number_like_text(
            text in "[-+]?[0-9]{0,30}(\\.[0-9]{0,20})?(e[-+]?[0-9]{1,4})?(ns|us|ms|s|m|h|d|w|y)?"
        ) {
            let _ = parse_whole(&text, 0, u64::MAX);
            let _ = parse_decimal(&text, f64::MIN, f64::MAX);
            let _ = parse_duration(&text, Duration::ZERO);
            let _ = parse_mode(&text);
        }

        #[test]
        fn prop_whole_numbers_round_trip(n in any::<u64>(), min in any::<u64>(), max in any::<u64>()) {
            let parsed = parse_whole(&n.to_string(), min, max);
            prop_assert_eq!(parsed.is_ok(), (min..=max).contains(&n));
            if let Ok(back) = parsed {
                prop_assert_eq!(back, n);
            }
        }

        #[test]
        fn prop_decimals_round_trip(x in any::<f64>()) {
            let parsed = parse_decimal(&x.to_string(), 0.001, 1e6);
            prop_assert_eq!(parsed.is_ok(), (0.001..=1e6).contains(&x));
            if let Ok(back) = parsed {
                prop_assert_eq!(back, x);
            }
        }

        #[test]
        fn prop_durations_round_trip_as_humantime_prints_them(nanos in 0..=MAX_DURATION.as_nanos() as u64 * 2) {
            let d = Duration::from_nanos(nanos);
            let printed = humantime::format_duration(d).to_string();
            let parsed = parse_duration(&printed, Duration::ZERO);
            prop_assert_eq!(parsed.is_ok(), d <= MAX_DURATION, "{}", printed);
            if let Ok(back) = parsed {
                prop_assert_eq!(back, d, "{}", printed);
            }
        }

        #[test]
        fn prop_modes_round_trip(mode in 0..=0o7777u32) {
            prop_assert_eq!(parse_mode(&format!("{mode:o}")), Ok(mode));
        }
    }
}
