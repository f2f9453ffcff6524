//! Time, [RFC 868](https://www.rfc-editor.org/rfc/rfc868): 4 bytes, big-endian, the seconds
//! since 1900-01-01 00:00 UTC; then the connection closes. Over UDP, the same as the answer.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use super::answer::{Answer, answer_service};

/// Seconds from 1900-01-01 to 1970-01-01 (RFC 868: 2,208,988,800).
pub const EPOCH_OFFSET: u64 = 2_208_988_800;

/// The RFC 868 timestamp of `now`: seconds since 1900, modulo 2³² (the count wraps in 2036,
/// as the RFC's 32 bits do).
///
/// # Examples
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use socketkit::services::time::rfc868;
/// assert_eq!(rfc868(UNIX_EPOCH), 2_208_988_800u32.to_be_bytes());
/// assert_eq!(rfc868(UNIX_EPOCH + Duration::from_secs(1)), 2_208_988_801u32.to_be_bytes());
/// ```
pub fn rfc868(now: SystemTime) -> [u8; 4] {
    let unix = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    // Truncation to 32 bits is the protocol's own wrap-around.
    ((unix + EPOCH_OFFSET) as u32).to_be_bytes()
}

/// The time service.
#[derive(Debug, Clone, Copy, Default)]
pub struct Time;

impl Answer for Time {
    fn answer(&self) -> impl AsRef<[u8]> + Into<Cow<'_, [u8]>> {
        Stamp(rfc868(SystemTime::now()))
    }
}

answer_service!(Time);

/// Four bytes of answer, kept off the heap: only the immediate reply copies them into one.
struct Stamp([u8; 4]);

impl AsRef<[u8]> for Stamp {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Stamp> for Cow<'_, [u8]> {
    fn from(stamp: Stamp) -> Self {
        Cow::Owned(stamp.0.to_vec())
    }
}
