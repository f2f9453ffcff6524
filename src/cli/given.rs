//! Which options a command line wrote, as against those that took their defaults: a
//! command refuses an option it cannot apply only if the user gave it.

/// The options written on the command line, by clap id (`backlog`, `drain_timeout`): for a
/// command that must refuse an option it cannot apply, even one that has a default, rather
/// than ignore it.
#[derive(Debug, Default)]
pub(crate) struct Given(Vec<String>);

impl Given {
    /// The options of `matches` (a subcommand's) whose values came from the command line.
    pub(crate) fn of(matches: Option<&clap::ArgMatches>) -> Given {
        let Some(matches) = matches else {
            return Given::default();
        };
        Given(
            matches
                .ids()
                .filter(|id| {
                    matches.value_source(id.as_str())
                        == Some(clap::parser::ValueSource::CommandLine)
                })
                .map(|id| id.as_str().to_owned())
                .collect(),
        )
    }

    /// Whether the option with clap id `id` was written on the command line.
    pub(crate) fn contains(&self, id: &str) -> bool {
        self.0.iter().any(|given| given == id)
    }
}
