//! The `streamfold` binary: parse the command line and hand over.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    streamfold::cli::main(streamfold::cli::Cli::parse())
}
