//! The `nuvyn-executor` binary: parses the command line, runs it, maps errors to exit
//! codes (0 ok, 1 failed, 2 bad usage or payload, 3 partial). Everything else is the library.

use std::process::ExitCode;

use clap::Parser;
use nuvyn_executor::cli::{Cli, Env, LogFormat};
use nuvyn_executor::cli::{logging, run};

// A lake of many small files makes millions of short-lived allocations (a CSV reader's
// buffers per file, plans per table): glibc's allocator spent 17% of a 100,000-file run in
// malloc/free and grew fragmented with the heap. mimalloc is what datafusion-cli uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc keeps freed memory for a second and commits arenas eagerly: a 100,000-file run
/// peaked at 270-315 MB. Freed pages go back after 100 ms and arenas are committed as used:
/// 100,000 files peak at ~280 MB, 20,000 at ~130 MB. Returning them at once (0 ms) gets the
/// first to 210 MB but makes a 500 MB Parquet scan 45% slower (its buffers are freed and
/// faulted in again); 10 ms still costs it 20% (measured with ci/bench.sh's files). The
/// options must be set before the first allocation reserves an arena, so this runs as an ELF
/// constructor, before Rust's runtime allocates anything. Indices of `mi_option_e` in the
/// mimalloc 3 header the pinned libmimalloc-sys builds (`mimalloc.h`).
#[cfg(target_os = "linux")]
const MI_OPTION_PURGE_DELAY: i32 = 15;

#[cfg(target_os = "linux")]
extern "C" fn tune_allocator() {
    const MI_OPTION_ARENA_EAGER_COMMIT: i32 = 4;
    // SAFETY: plain option setters of the allocator, before any thread starts.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 100);
        libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
    }
}

#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static TUNE_ALLOCATOR: extern "C" fn() = tune_allocator;

fn main() -> ExitCode {
    // Like other Unix tools: output piped into `head` ends the process quietly instead of
    // panicking on the closed pipe.
    #[cfg(unix)]
    // SAFETY: restores the default SIGPIPE action before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let log_format = cli.log_format;
    logging::init(log_format);
    let config = match cli.into_config(&Env::from_process()) {
        Ok(c) => c,
        Err(e) => {
            // One line, in the format the logs are in (JSON lines for Databricks).
            match log_format {
                LogFormat::Json => tracing::error!("{e}"),
                LogFormat::Text => eprintln!("error: {e}"),
            }
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = match runtime.block_on(run::run(config)) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    };
    // A server shutting down may leave a job that outlived its drain timeout on a blocking
    // thread (it was told to stop and is recorded as interrupted): do not wait for it.
    skip_purge_at_exit();
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

/// When its threads end and at exit, mimalloc returns every freed page to the OS one
/// `madvise` at a time: ~10 ms after a job that held a few hundred MB, a twentieth of a
/// re-run that reads one new partition. The process is ending (the runtime's threads are
/// stopped next); the kernel takes the pages back at once.
fn skip_purge_at_exit() {
    #[cfg(target_os = "linux")]
    // SAFETY: a plain option setter; a negative purge delay means "never purge".
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1);
    }
}
