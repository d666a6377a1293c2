//! The `sessiond` binary: parse the configuration, set up logging, bind, and
//! hand over to `sessiond::run` until SIGTERM or SIGINT.

// Nothing on a request path panics: no unwrap, expect, panic, unreachable or
// unchecked indexing outside tests; a local `allow` names its reason.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::indexing_slicing
    )
)]

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use sessiond::{Config, Settings};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for a bad configuration (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let config = match Config::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            // --help or --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => return config_error(&first_line(&e.render().to_string())),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sessiond: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The OTLP exporter's connection is made on this runtime.
    let telemetry = {
        let _runtime = runtime.enter();
        match sessiond::telemetry::init(&config) {
            Ok(t) => t,
            Err(e) => return config_error(&e),
        }
    };
    let settings = match Settings::new(config) {
        Ok(s) => s,
        Err(e) => return config_error(&e),
    };
    let result = runtime.block_on(serve(settings));
    // After the drain, with the runtime still running the exporter's
    // connection: the spans still queued go out.
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sessiond: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    sessiond::serve(settings, listener, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn config_error(msg: &str) -> ExitCode {
    eprintln!("sessiond: bad configuration: {msg}");
    ExitCode::from(EXIT_CONFIG)
}

fn first_line(s: &str) -> String {
    s.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ")
        .to_owned()
}
