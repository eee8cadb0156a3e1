//! The `streamfold` binary: parse the command line and hand over.

use std::process::ExitCode;

use clap::Parser;

// The data path allocates per record (decoded values, keys, partials);
// glibc malloc and free were the largest items of its profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    no_transparent_huge_pages();
    streamfold::cli::main(streamfold::cli::Cli::parse())
}

/// Turns transparent huge pages off for this process (and what it
/// starts). mimalloc asks for huge pages on its arenas (`MADV_HUGEPAGE`),
/// and the first touch of such memory has the kernel find, compact if
/// need be, and zero a whole 2 MiB page. In profiles of the benchmark's
/// q7 that was a fifth of the process's CPU, on the consumer and rayon
/// threads, most of it in a process's first seconds; with huge pages off
/// those threads spent 1-5% of their time on it. streamfold's working set
/// (about 100 MiB) is small enough that 4 KiB pages cost it nothing we
/// measured.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes no pointers; it sets one flag of
    // this process. `prctl` is variadic and the kernel reads its arguments
    // as `unsigned long` (and refuses the call unless the last three are
    // zero), so they are passed as such. A kernel without it (before
    // 3.15) returns an error, which leaves huge pages as they were.
    unsafe {
        let (on, unused) = (1 as libc::c_ulong, 0 as libc::c_ulong);
        libc::prctl(libc::PR_SET_THP_DISABLE, on, unused, unused, unused);
    }
}
