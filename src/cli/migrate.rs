//! `tandem migrate`: a one-way bulk copy with a validation report.

use std::process::ExitCode;

use clap::Args;

use super::Failure;

/// Arguments of `tandem migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {}

pub async fn migrate(_args: MigrateArgs) -> Result<ExitCode, Failure> {
    Err(anyhow::anyhow!("tandem migrate is not built yet").into())
}
