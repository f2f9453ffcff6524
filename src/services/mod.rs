//! The classic internet services, one file per RFC, each an ordinary server handler.
//!
//! | service | what a client gets |
//! |---|---|
//! | [`greeting`] | the message (default `你好`), then the connection closes |

pub mod greeting;

use std::fmt;
use std::str::FromStr;

/// A built-in service, by the name the command line uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// [`greeting`]: send a message, then close.
    Greeting,
}

impl Service {
    /// Every service, in the order `socketkit serve --help` lists them.
    pub const ALL: [Service; 1] = [Service::Greeting];

    /// The name used on the command line and in the `listening on` line.
    pub fn name(self) -> &'static str {
        match self {
            Service::Greeting => "greeting",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a built-in service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown service '{0}' (expected one of: {list})", list = Service::ALL.map(Service::name).join(", "))]
pub struct UnknownService(pub String);

impl FromStr for Service {
    type Err = UnknownService;

    fn from_str(name: &str) -> Result<Service, UnknownService> {
        Service::ALL
            .into_iter()
            .find(|service| service.name() == name)
            .ok_or_else(|| UnknownService(name.to_owned()))
    }
}
