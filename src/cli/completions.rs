//! `socketkit completions SHELL` and `socketkit man`: both generated from the same clap
//! definitions as the parser, so they cannot drift from what the program accepts.

use std::io::Write;

use clap::CommandFactory;

use super::args::Cli;
use super::exit::CliError;

/// Writes the completion script for `shell` to stdout.
pub(crate) fn print_completions(shell: clap_complete::Shell) -> Result<(), CliError> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "socketkit", &mut script);
    write_stdout(&script)
}

/// Writes the manual page (roff) to stdout, every subcommand as a section of its own.
pub(crate) fn print_man_page() -> Result<(), CliError> {
    let command = Cli::command();
    let mut page = Vec::new();
    // Not `Man::render`: its SUBCOMMANDS section points to a page per subcommand
    // (`socketkit-serve(1)`), which do not exist; each is a section of this page instead.
    let man = clap_mangen::Man::new(command.clone());
    man.render_title(&mut page).map_err(stdout_error)?;
    man.render_name_section(&mut page).map_err(stdout_error)?;
    man.render_synopsis_section(&mut page)
        .map_err(stdout_error)?;
    man.render_description_section(&mut page)
        .map_err(stdout_error)?;
    man.render_options_section(&mut page)
        .map_err(stdout_error)?;
    man.render_extra_section(&mut page).map_err(stdout_error)?;
    man.render_version_section(&mut page)
        .map_err(stdout_error)?;
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let heading = format!("SOCKETKIT {}", sub.get_name().to_uppercase());
        writeln!(page, ".SH \"{heading}\"").map_err(stdout_error)?;
        let man = clap_mangen::Man::new(sub.clone());
        man.render_description_section(&mut page)
            .map_err(stdout_error)?;
        man.render_synopsis_section(&mut page)
            .map_err(stdout_error)?;
        man.render_options_section(&mut page)
            .map_err(stdout_error)?;
    }
    write_stdout(&page)
}

use super::exit::{stdout_error, write_stdout};
