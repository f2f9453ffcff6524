//! The second stage of argument handling: raw strings to checked values, without touching the
//! network. Every failure here is a usage error (exit 2).

use std::time::Duration;

use socketkit::endpoint::Endpoint;

use super::exit::CliError;

/// An endpoint as written, or a usage error in the SPEC's words.
pub(crate) fn endpoint(text: &str) -> Result<Endpoint, CliError> {
    text.parse()
        .map_err(|err: socketkit::endpoint::EndpointError| CliError::Usage(err.to_string()))
}

/// A humane duration (`500ms`, `30s`, `2m`; a bare number is seconds, as `timeout 5` and
/// `nc -w 5` take it) for the option `flag`.
pub(crate) fn duration(flag: &str, text: &str) -> Result<Duration, CliError> {
    if let Ok(seconds) = text.parse::<f64>() {
        if let Ok(duration) = Duration::try_from_secs_f64(seconds) {
            return Ok(duration);
        }
    }
    humantime::parse_duration(text)
        .map_err(|err| CliError::Usage(format!("invalid duration '{text}' for {flag}: {err}")))
}

/// An optional duration option.
pub(crate) fn optional_duration(
    flag: &str,
    text: Option<&str>,
) -> Result<Option<Duration>, CliError> {
    text.map(|text| duration(flag, text)).transpose()
}

/// File permission bits written in octal, as chmod takes them.
pub(crate) fn octal_mode(flag: &str, text: &str) -> Result<u32, CliError> {
    match u32::from_str_radix(text, 8) {
        Ok(mode) if mode <= 0o7777 => Ok(mode),
        _ => Err(CliError::Usage(format!(
            "invalid mode '{text}' for {flag}: expected octal permission bits such as 660"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_humane() {
        assert_eq!(
            duration("--x", "500ms").ok(),
            Some(Duration::from_millis(500))
        );
        assert_eq!(duration("--x", "2m").ok(), Some(Duration::from_secs(120)));
        assert_eq!(
            duration("--x", "1.5").ok(),
            Some(Duration::from_millis(1500))
        );
        assert!(duration("--x", "-1").is_err());
        let err = duration("--timeout", "5x").unwrap_err().to_string();
        assert!(
            err.starts_with("invalid duration '5x' for --timeout: "),
            "{err}"
        );
    }

    #[test]
    fn modes_are_octal() {
        assert_eq!(octal_mode("--unix-mode", "660").ok(), Some(0o660));
        assert!(octal_mode("--unix-mode", "999").is_err());
    }
}
