//! The `openai-realtime-relay` binary: load `.env`, read the config, start logging, run the relay.

use std::process::ExitCode;

use openai_realtime_relay::{
    config::{Config, Env, KeyPolicy},
    fake_upstream::{FakeUpstream, Script},
};

const USAGE: &str = "usage: openai-realtime-relay [--demo | --demo-if-no-key]

  (no flag)          relay to OPENAI_API_URL with OPENAI_API_KEY (required)
  --demo             relay to a built-in fake Realtime server on loopback; no key needed
  --demo-if-no-key   --demo when OPENAI_API_KEY is unset, the real API otherwise

Configuration comes from the environment and a .env file; see .env.example.";

fn main() -> ExitCode {
    let _ = dotenvy::dotenv();
    let mut demo = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--demo" => demo = true,
            "--demo-if-no-key" => {
                demo = std::env::var("OPENAI_API_KEY").map_or(true, |k| k.trim().is_empty())
            }
            "--version" | "-V" => {
                println!("openai-realtime-relay {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument {other:?}\n\n{USAGE}");
                return ExitCode::from(64);
            }
        }
    }
    let policy = if demo {
        KeyPolicy::Demo
    } else {
        KeyPolicy::Required
    };
    let mut config = match Config::from_source(&Env, policy) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(64);
        }
    };
    init_logging(config.debug);

    let result = actix_web::rt::System::new().block_on(async move {
        let _fake = if demo {
            let fake = FakeUpstream::start(Script::demo()).await?;
            config.upstream.url = fake.url();
            log::warn!(
                "demo mode: no OpenAI key is used; sessions go to the built-in fake Realtime server at {}",
                config.upstream.url
            );
            Some(fake)
        } else {
            None
        };
        for warning in config.warnings() {
            log::warn!("{warning}");
        }
        let listener = std::net::TcpListener::bind((config.host.as_str(), config.port))?;
        log::info!(
            "openai-realtime-relay {} listening on {} upstream={} max_connections={}",
            env!("CARGO_PKG_VERSION"),
            listener.local_addr()?,
            config.upstream.url,
            config.max_connections
        );
        let relay = openai_realtime_relay::start(config, listener).await?;
        let handle = relay.handle();
        actix_web::rt::spawn(async move {
            shutdown_signal().await;
            log::info!("shutdown signal received; stopping");
            handle.stop(true).await;
        });
        relay.wait().await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("relay failed: {e}");
            eprintln!("openai-realtime-relay: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(debug: bool) {
    let default = if debug { "debug" } else { "info" };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default)).init();
}

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
