//! `tandem init` and `tandem completions`.

use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::Failure;

/// Arguments of `tandem init`.
#[derive(Debug, Args)]
pub struct InitArgs {}

/// A shell to complete in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

pub fn init(_args: InitArgs) -> Result<ExitCode, Failure> {
    Err(anyhow::anyhow!("tandem init is not built yet").into())
}

pub fn completions(_shell: Shell) -> Result<ExitCode, Failure> {
    Err(anyhow::anyhow!("tandem completions is not built yet").into())
}
