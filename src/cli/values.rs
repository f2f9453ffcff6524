//! The value parsers of every numeric option, in one place: whole numbers, decimal numbers,
//! durations and octal modes, each with the range the option allows. A value out of range is
//! refused by clap (exit 2) with one line naming the option and the range, as wrk, iperf3
//! and ab do: `invalid value '0' for --connections: must be a whole number from 1 to 1000000`.
//!
//! The text parsers ([`parse_whole`], [`parse_decimal`], [`parse_duration`], [`parse_mode`])
//! are plain functions, so the property tests below feed them arbitrary strings.

use std::ffi::OsStr;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::error::ErrorKind;

/// The longest duration any option takes. A bound, not a convenience: durations are added
/// to each other and to `Instant::now()`, which panics on overflow.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// [`MAX_DURATION`] as the messages write it (and as the parser reads it back).
const MAX_DURATION_TEXT: &str = "365d";

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

/// A whole-number option from `min` to `max` (both included); `max` must fit `T`.
pub(crate) fn whole<T>(min: u64, max: u64) -> Whole<T> {
    Whole {
        min,
        max,
        into: PhantomData,
    }
}

/// A decimal option from `min` to `max` (both included).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Decimal {
    min: f64,
    max: f64,
}

/// A decimal-number option from `min` to `max`.
pub(crate) fn decimal(min: f64, max: f64) -> Decimal {
    Decimal { min, max }
}

/// A duration option from `min` to [`MAX_DURATION`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    min: Duration,
}

/// A duration that may be zero (`--wait 0`: do not wait).
pub(crate) fn duration_or_zero() -> Span {
    Span {
        min: Duration::ZERO,
    }
}

/// A duration of at least a millisecond (a timeout of zero would give up at once).
pub(crate) fn duration() -> Span {
    Span {
        min: Duration::from_millis(1),
    }
}

/// File permission bits in octal, as chmod takes them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mode;

/// Why a value was refused: what kind of value it should be, and its range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused(pub(crate) String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
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

/// The clap error for `value` of `arg`: one line, `invalid WHAT 'VALUE' for --OPTION: WHY`.
fn refuse(what: &str, arg: Option<&clap::Arg>, value: &OsStr, why: &Refused) -> clap::Error {
    let name = arg.map_or_else(
        || "the option".to_owned(),
        |arg| match (arg.get_long(), arg.get_short()) {
            (Some(long), _) => format!("--{long}"),
            (None, Some(short)) => format!("-{short}"),
            (None, None) => arg.get_id().to_string(),
        },
    );
    let value = value.to_string_lossy();
    clap::Error::raw(
        ErrorKind::ValueValidation,
        format!("invalid {what} '{value}' for {name}: {why}\n"),
    )
}

/// The value as text; a value that is not UTF-8 cannot be a number of any kind.
fn text<'a>(
    what: &str,
    arg: Option<&clap::Arg>,
    value: &'a OsStr,
    why: impl FnOnce() -> Refused,
) -> Result<&'a str, clap::Error> {
    value
        .to_str()
        .ok_or_else(|| refuse(what, arg, value, &why()))
}

impl<T> TypedValueParser for Whole<T>
where
    T: TryFrom<u64> + Clone + Send + Sync + 'static,
{
    type Value = T;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        let (min, max) = (self.min, self.max);
        let refused = |why: Refused| refuse("value", arg, value, &why);
        let text = text("value", arg, value, || {
            parse_whole("", min, max).unwrap_err()
        })?;
        let n = parse_whole(text, min, max).map_err(refused)?;
        // `max` fits `T` for every option (checked by the `ranges_fit_their_types` test).
        T::try_from(n).map_err(|_| refused(parse_whole("", min, max).unwrap_err()))
    }
}

impl TypedValueParser for Decimal {
    type Value = f64;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<f64, clap::Error> {
        let (min, max) = (self.min, self.max);
        let text = text("value", arg, value, || {
            parse_decimal("", min, max).unwrap_err()
        })?;
        parse_decimal(text, min, max).map_err(|why| refuse("value", arg, value, &why))
    }
}

impl TypedValueParser for Span {
    type Value = Duration;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<Duration, clap::Error> {
        let min = self.min;
        let text = text("duration", arg, value, || {
            parse_duration("", min).unwrap_err()
        })?;
        parse_duration(text, min).map_err(|why| refuse("duration", arg, value, &why))
    }
}

impl TypedValueParser for Mode {
    type Value = u32;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<u32, clap::Error> {
        let text = text("mode", arg, value, || parse_mode("").unwrap_err())?;
        parse_mode(text).map_err(|why| refuse("mode", arg, value, &why))
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
