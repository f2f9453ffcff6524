//! Quote of the day, [RFC 865](https://www.rfc-editor.org/rfc/rfc865): one short message
//! (under 512 bytes, as the RFC asks), then the connection closes. Over UDP, the same as the
//! answer. Quotes come from a built-in list or a file, and are served in turn.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::answer::{Answer, answer_service};

/// The RFC's limit on a quote, in bytes (a quote must be shorter).
pub const MAX_QUOTE: usize = 512;

/// The largest quotes file read, in bytes: far more than any fortune file.
pub const MAX_QUOTES_FILE: u64 = crate::option_file::MAX_OPTION_FILE;

const BUILT_IN: [&str; 6] = [
    "Be conservative in what you do, be liberal in what you accept from others.\n  -- Jon Postel, RFC 793",
    "Premature optimization is the root of all evil.\n  -- Donald Knuth",
    "Simplicity is prerequisite for reliability.\n  -- Edsger W. Dijkstra",
    "The network is reliable. The network is secure. Latency is zero.\n  -- the first fallacies of distributed computing",
    "Make it work, make it right, make it fast.\n  -- Kent Beck",
    "If you can't measure it, you can't improve it.\n  -- attributed to Lord Kelvin",
];

/// A quote file that cannot be used, with the reason.
#[derive(Debug, thiserror::Error)]
pub enum QuotesError {
    /// The file could not be read.
    #[error("cannot read quotes from {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// Why, in words.
        reason: String,
    },
    /// A quote is 512 bytes or longer.
    #[error(
        "quote {number} in {path} is {len} bytes with its CR LF line ends; RFC 865 wants fewer \
         than 512"
    )]
    TooLong {
        /// The file.
        path: String,
        /// Which quote, from 1.
        number: usize,
        /// Its length in bytes, with the line end.
        len: usize,
    },
    /// The file is larger than [`MAX_QUOTES_FILE`] (`/dev/zero` would never end).
    #[error("{path} is larger than {} MiB; a quotes file is text", MAX_QUOTES_FILE >> 20)]
    TooLarge {
        /// The file.
        path: String,
    },
    /// The file is not UTF-8 text.
    #[error("{path}:{line}: not UTF-8 text; a quotes file is text")]
    NotText {
        /// The file.
        path: String,
        /// The first line that is not, from 1.
        line: usize,
    },
    /// The file holds no quote.
    #[error("{path} holds no quotes (separate quotes with a blank line or a line '%')")]
    Empty {
        /// The file.
        path: String,
    },
}

/// The qotd service: hands out its quotes in turn.
///
/// # Examples
///
/// ```
/// use socketkit::services::qotd::Qotd;
/// let qotd = Qotd::from_text("first\n\nsecond\n", "inline").unwrap();
/// assert_eq!(qotd.len(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct Qotd {
    quotes: Arc<[Arc<[u8]>]>,
    next: Arc<AtomicUsize>,
}

impl Default for Qotd {
    fn default() -> Qotd {
        Qotd::from_quotes(
            BUILT_IN
                .iter()
                .map(|q| format!("{}\r\n", q.replace('\n', "\r\n")).into_bytes()),
        )
    }
}

impl Qotd {
    /// The quotes of a file: separated by blank lines or by lines of `%` (the fortune format).
    ///
    /// # Errors
    ///
    /// The file cannot be read, is larger than [`MAX_QUOTES_FILE`], holds no quote, or holds
    /// one of 512 bytes or more.
    pub fn from_file(path: &Path) -> Result<Qotd, QuotesError> {
        let name = path.display().to_string();
        // A file that opens but is not text is wrong content, not a failed read.
        let read_error = |err: std::io::Error| match err.kind() {
            std::io::ErrorKind::InvalidData => QuotesError::NotText {
                path: name.clone(),
                line: crate::option_file::not_text_line(&err).unwrap_or(1),
            },
            _ => QuotesError::Read {
                path: name.clone(),
                reason: crate::error::describe(&err),
            },
        };
        let text = match crate::option_file::read_text(path) {
            Err(err) if err.kind() == std::io::ErrorKind::FileTooLarge => {
                return Err(QuotesError::TooLarge { path: name });
            }
            read => read.map_err(read_error)?,
        };
        Qotd::from_text(&text, &name)
    }

    /// The quotes in `text`, which came from `origin` (named in errors).
    ///
    /// # Errors
    ///
    /// As [`Qotd::from_file`].
    pub fn from_text(text: &str, origin: &str) -> Result<Qotd, QuotesError> {
        let mut quotes = Vec::new();
        let mut current: Vec<&str> = Vec::new();
        // A byte order mark that an editor put first is no part of the first quote.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for line in text.lines().chain(std::iter::once("")) {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim() == "%" {
                if !current.is_empty() {
                    // Network text: every line ends in CR LF (RFC 865's quote is ASCII
                    // text, as the other classic services' lines are).
                    quotes.push(format!("{}\r\n", current.join("\r\n")).into_bytes());
                    current.clear();
                }
            } else {
                current.push(line);
            }
        }
        if quotes.is_empty() {
            return Err(QuotesError::Empty {
                path: origin.to_owned(),
            });
        }
        if let Some((i, quote)) = quotes
            .iter()
            .enumerate()
            .find(|(_, q)| q.len() >= MAX_QUOTE)
        {
            return Err(QuotesError::TooLong {
                path: origin.to_owned(),
                number: i + 1,
                len: quote.len(),
            });
        }
        Ok(Qotd::from_quotes(quotes))
    }

    fn from_quotes(quotes: impl IntoIterator<Item = Vec<u8>>) -> Qotd {
        Qotd {
            quotes: quotes.into_iter().map(Arc::from).collect(),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// How many quotes there are.
    pub fn len(&self) -> usize {
        self.quotes.len()
    }

    /// Whether there are none (never true for a constructed `Qotd`).
    pub fn is_empty(&self) -> bool {
        self.quotes.is_empty()
    }

    /// The next quote, in turn.
    pub fn next_quote(&self) -> &[u8] {
        // Every constructor refuses an empty list, so the modulus is never zero.
        let next = self.next.fetch_add(1, Ordering::Relaxed) % self.quotes.len();
        &self.quotes[next]
    }
}

impl Answer for Qotd {
    fn answer(&self) -> impl AsRef<[u8]> + Into<Cow<'_, [u8]>> {
        self.next_quote()
    }
}

answer_service!(Qotd);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_quotes_fit_the_rfc() {
        let qotd = Qotd::default();
        for _ in 0..qotd.len() {
            let quote = qotd.next_quote();
            assert!(quote.len() < MAX_QUOTE && quote.ends_with(b"\r\n"));
        }
    }

    #[test]
    fn fortune_and_paragraph_separators() -> Result<(), QuotesError> {
        let qotd = Qotd::from_text("one\ntwo lines\n%\nthree\n\n\nfour\n", "t")?;
        assert_eq!(qotd.len(), 3);
        assert_eq!(qotd.next_quote(), b"one\r\ntwo lines\r\n");
        assert_eq!(qotd.next_quote(), b"three\r\n");
        assert_eq!(qotd.next_quote(), b"four\r\n");
        assert_eq!(qotd.next_quote(), b"one\r\ntwo lines\r\n");
        Ok(())
    }

    #[test]
    fn a_byte_order_mark_first_is_no_part_of_the_first_quote() {
        let qotd = Qotd::from_text("\u{feff}one\r\n%\r\ntwo\r\n", "bom").unwrap();
        assert_eq!(qotd.next_quote(), b"one\r\n");
        assert_eq!(qotd.next_quote(), b"two\r\n");
    }

    #[test]
    fn long_and_empty_files_are_refused() {
        let long = "x".repeat(600);
        let err = Qotd::from_text(&format!("ok\n\n{long}\n"), "q.txt").unwrap_err();
        assert_eq!(
            err.to_string(),
            "quote 2 in q.txt is 602 bytes with its CR LF line ends; RFC 865 wants fewer than 512"
        );
        assert!(matches!(
            Qotd::from_text("\n%\n", "e"),
            Err(QuotesError::Empty { .. })
        ));
    }
}
