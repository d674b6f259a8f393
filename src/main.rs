//! The `nuvyn-executor` binary: parses the command line, runs it, maps errors to exit
//! codes (0 ok, 1 failed, 2 bad usage or payload, 3 partial). Everything else is the library.

use std::process::ExitCode;

use clap::Parser;
use nuvyn_executor::cli::{Cli, Env, LogFormat};
use nuvyn_executor::cli::{logging, run};

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
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}
