//! The tutorial's service: send a fixed message (default `你好`, UTF-8, no newline) to each
//! client, then close. Over UDP, the message answers each datagram.

use std::borrow::Cow;
use std::sync::Arc;

use super::answer::{Answer, answer_service};

/// The message the tutorial's server sends.
pub const DEFAULT_MESSAGE: &str = "你好";

/// A handler that writes `message` and closes.
///
/// # Examples
///
/// ```
/// use socketkit::services::greeting::Greeting;
/// let hello = Greeting::new("hello\n");
/// assert_eq!(hello.message(), b"hello\n");
/// ```
#[derive(Debug, Clone)]
pub struct Greeting {
    message: Arc<[u8]>,
}

impl Greeting {
    /// A greeting of `message`.
    pub fn new(message: impl AsRef<[u8]>) -> Greeting {
        Greeting {
            message: Arc::from(message.as_ref()),
        }
    }

    /// The bytes each client receives.
    pub fn message(&self) -> &[u8] {
        &self.message
    }
}

impl Default for Greeting {
    fn default() -> Greeting {
        Greeting::new(DEFAULT_MESSAGE)
    }
}

impl Answer for Greeting {
    fn answer(&self) -> impl AsRef<[u8]> + Into<Cow<'_, [u8]>> {
        &self.message[..]
    }
}

answer_service!(Greeting);
