//! Process signals: SIGTERM or SIGINT drains the relay, and a second one during the drain exits
//! at once with status 1; SIGHUP re-reads `RELAY_TOKENS_FILE`. `main` hands the started relay to
//! `serve`, which returns when the relay has stopped.

use std::io;

use crate::{Relay, TokenReloader};

/// The log target of these lines: the binary's, as when they were written in `main.rs`, so log
/// filters written for them keep matching.
const TARGET: &str = env!("CARGO_CRATE_NAME");

/// Runs `relay` until it stops by itself or a shutdown signal arrives, then drains it (at most
/// `SHUTDOWN_TIMEOUT`) and waits for it to stop. Must run inside the relay's actix system.
pub async fn serve(mut relay: Relay) -> io::Result<()> {
    reload_tokens_on_hangup(relay.token_reloader());
    tokio::select! {
        ended = relay.until_stopped() => return ended,
        _ = shutdown_signal() => {}
    }
    log::info!(target: TARGET, "shutdown signal received; draining (a second signal exits at once)");
    actix_web::rt::spawn(async {
        shutdown_signal().await;
        log::warn!(target: TARGET, "second shutdown signal: exiting now");
        std::process::exit(1);
    });
    let report = relay.drain().await;
    log::info!(
        target: TARGET,
        "stopped: {} session(s) at shutdown, {} cut",
        report.sessions,
        report.cut
    );
    relay.wait().await
}

/// Reloads the tokens file on every SIGHUP, for the life of the process.
#[cfg(unix)]
fn reload_tokens_on_hangup(reloader: TokenReloader) {
    use tokio::signal::unix::{signal, SignalKind};
    actix_web::rt::spawn(async move {
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            match reloader.reload() {
                Ok(n) => {
                    log::info!(target: TARGET, "SIGHUP: reloaded RELAY_TOKENS_FILE ({n} tokens)")
                }
                Err(e) => log::error!(
                    target: TARGET,
                    "SIGHUP: tokens not reloaded, keeping the old ones: {e}"
                ),
            }
        }
    });
}

#[cfg(not(unix))]
fn reload_tokens_on_hangup(_: TokenReloader) {}

/// Resolves on SIGTERM or SIGINT (Ctrl-C); on other platforms, on Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
