//! The `openai-realtime-relay` binary: read the flags, load `.env`, read the config, start
//! logging, bind, and run the relay until a signal drains it. Everything it runs is in the
//! library (`ops::healthcheck`, `ops::logfmt`, `ops::signals`, `start`); exit codes: 0 done,
//! 1 failed, 64 bad flags or configuration.

#![forbid(unsafe_code)]

use std::{ops::ControlFlow, process::ExitCode};

use fake_upstream::{FakeUpstream, Script};
use openai_realtime_relay::{
    config::{Config, Env, KeyPolicy},
    ops::{healthcheck, logfmt, signals},
};

const USAGE: &str = "usage: openai-realtime-relay [--demo | --demo-if-no-key]
       openai-realtime-relay healthcheck

  (no flag)          relay to OPENAI_API_URL with OPENAI_API_KEY (required)
  --demo             relay to a built-in fake Realtime server on loopback; no key needed
  --demo-if-no-key   --demo when OPENAI_API_KEY is unset, the real API otherwise
  healthcheck        exit 0 if this host's relay (PORT) answers /health with 200, else 1

Configuration comes from the environment and a .env file; see .env.example.";

fn main() -> ExitCode {
    let _ = dotenvy::dotenv();
    let demo = match demo_from_args() {
        ControlFlow::Continue(demo) => demo,
        ControlFlow::Break(code) => return code,
    };
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
    logfmt::init(config.debug, config.log_format);
    // Bind before anything else starts (the demo upstream, the workers): a port in use is one
    // line that names the address, and nothing else has run.
    let listener = match openai_realtime_relay::listen(&config.host, config.port, "PORT (or HOST)")
    {
        Ok(l) => l,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::FAILURE;
        }
    };

    let result = actix_web::rt::System::new().block_on(async move {
        let _fake = if demo {
            Some(start_demo_upstream(&mut config).await?)
        } else {
            None
        };
        for warning in config.warnings() {
            log::warn!("{warning}");
        }
        log::info!(
            "openai-realtime-relay {} listening on {} upstream={} max_connections={}",
            env!("CARGO_PKG_VERSION"),
            listener.local_addr()?,
            config.upstream.url,
            config.max_connections
        );
        signals::serve(openai_realtime_relay::start(config, listener).await?).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("relay failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Whether to run in demo mode, from the arguments in order; `Break` with the exit code when an
/// argument is the whole job (`healthcheck`, `--version`, `--help`) or is unknown.
fn demo_from_args() -> ControlFlow<ExitCode, bool> {
    let mut demo = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "healthcheck" => return ControlFlow::Break(healthcheck::run()),
            "--demo" => demo = true,
            "--demo-if-no-key" => {
                demo = std::env::var("OPENAI_API_KEY").map_or(true, |k| k.trim().is_empty())
            }
            "--version" | "-V" => {
                println!("openai-realtime-relay {}", env!("CARGO_PKG_VERSION"));
                return ControlFlow::Break(ExitCode::SUCCESS);
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                return ControlFlow::Break(ExitCode::SUCCESS);
            }
            other => {
                eprintln!("unknown argument {other:?}\n\n{USAGE}");
                return ControlFlow::Break(ExitCode::from(64));
            }
        }
    }
    ControlFlow::Continue(demo)
}

/// Starts the built-in fake Realtime server on loopback and points the relay at it.
async fn start_demo_upstream(config: &mut Config) -> std::io::Result<FakeUpstream> {
    let fake = FakeUpstream::start(Script::demo()).await?;
    config.upstream.url = fake.url();
    log::warn!(
        "demo mode: no OpenAI key is used; sessions go to the built-in fake Realtime server at {}",
        config.upstream.url
    );
    Ok(fake)
}
