//! The `streamfold` binary: parse the command line and hand over.

use std::process::ExitCode;

use clap::Parser;

// The data path allocates per record (decoded values, keys, partials);
// glibc malloc and free were the largest items of its profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    streamfold::cli::main(streamfold::cli::Cli::parse())
}
