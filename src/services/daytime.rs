//! Daytime, [RFC 867](https://www.rfc-editor.org/rfc/rfc867): one human-readable line with the
//! date and time, then the connection closes. Over UDP, the same line as the answer.
//!
//! The line follows the RFC's suggested syntax, in UTC:
//! `Tuesday, November 24, 2026 22:44:11-UTC` followed by CR LF.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use super::answer::{Answer, answer_service};

const WEEKDAYS: [&str; 7] = [
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// The daytime line for `now`, with its CR LF.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// let t = UNIX_EPOCH + Duration::from_secs(1_795_560_251);
/// assert_eq!(
///     socketkit::services::daytime::line(t),
///     "Tuesday, November 24, 2026 22:44:11-UTC\r\n"
/// );
/// ```
pub fn line(now: SystemTime) -> String {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let of_day = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{}, {} {day}, {year} {:02}:{:02}:{:02}-UTC\r\n",
        WEEKDAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60,
    )
}

/// Year, month (1–12) and day (1–31) of a count of days since 1970-01-01, by Howard
/// Hinnant's `civil_from_days` (proleptic Gregorian calendar).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// The daytime service.
#[derive(Debug, Clone, Copy, Default)]
pub struct Daytime;

impl Answer for Daytime {
    fn answer(&self) -> impl AsRef<[u8]> + Into<Cow<'_, [u8]>> {
        line(SystemTime::now()).into_bytes()
    }
}

answer_service!(Daytime);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_edges() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
        assert_eq!(civil_from_days(20_416), (2025, 11, 24));
    }

    #[test]
    fn the_epoch_was_a_thursday() {
        assert_eq!(
            line(UNIX_EPOCH),
            "Thursday, January 1, 1970 00:00:00-UTC\r\n"
        );
    }
}
