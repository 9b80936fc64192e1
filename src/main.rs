//! The `openai-realtime-relay` binary: load `.env`, read the config, start logging, run the relay.

use std::process::ExitCode;

use fake_upstream::{FakeUpstream, Script};
use openai_realtime_relay::config::{Config, Env, KeyPolicy, LogFormat};

const USAGE: &str = "usage: openai-realtime-relay [--demo | --demo-if-no-key]
       openai-realtime-relay healthcheck

  (no flag)          relay to OPENAI_API_URL with OPENAI_API_KEY (required)
  --demo             relay to a built-in fake Realtime server on loopback; no key needed
  --demo-if-no-key   --demo when OPENAI_API_KEY is unset, the real API otherwise
  healthcheck        exit 0 if this host's relay (PORT) answers /health with 200, else 1

Configuration comes from the environment and a .env file; see .env.example.";

fn main() -> ExitCode {
    let _ = dotenvy::dotenv();
    let mut demo = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "healthcheck" => return healthcheck(),
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
    init_logging(config.debug, config.log_format);
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
        log::info!(
            "openai-realtime-relay {} listening on {} upstream={} max_connections={}",
            env!("CARGO_PKG_VERSION"),
            listener.local_addr()?,
            config.upstream.url,
            config.max_connections
        );
        let mut relay = openai_realtime_relay::start(config, listener).await?;
        #[cfg(unix)]
        {
            let reloader = relay.token_reloader();
            actix_web::rt::spawn(async move {
                use tokio::signal::unix::{signal, SignalKind};
                let Ok(mut hup) = signal(SignalKind::hangup()) else {
                    return;
                };
                while hup.recv().await.is_some() {
                    match reloader.reload() {
                        Ok(n) => log::info!("SIGHUP: reloaded RELAY_TOKENS_FILE ({n} tokens)"),
                        Err(e) => log::error!("SIGHUP: tokens not reloaded, keeping the old ones: {e}"),
                    }
                }
            });
        }
        tokio::select! {
            ended = relay.until_stopped() => return ended,
            _ = shutdown_signal() => {}
        }
        log::info!("shutdown signal received; draining (a second signal exits at once)");
        actix_web::rt::spawn(async {
            shutdown_signal().await;
            log::warn!("second shutdown signal: exiting now");
            std::process::exit(1);
        });
        let report = relay.drain().await;
        log::info!(
            "stopped: {} session(s) at shutdown, {} cut",
            report.sessions,
            report.cut
        );
        relay.wait().await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("relay failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(debug: bool, format: LogFormat) {
    let default = if debug { "debug" } else { "info" };
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default));
    if format == LogFormat::Json {
        builder.format(|buf, record| {
            use std::io::Write;
            let line = openai_realtime_relay::ops::logfmt::json_line(
                &buf.timestamp_millis().to_string(),
                record.level().as_str(),
                record.target(),
                &record.args().to_string(),
            );
            writeln!(buf, "{line}")
        });
    }
    builder.init();
}

/// `healthcheck`: GET /health on this host's relay; for container health checks without curl.
fn healthcheck() -> ExitCode {
    use std::io::{Read, Write};
    use std::time::Duration;
    let _ = dotenvy::dotenv();
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(8080);
    let host = match std::env::var("HOST").ok().as_deref().map(str::trim) {
        None | Some("") | Some("0.0.0.0") => "127.0.0.1".to_string(),
        Some("::") => "::1".to_string(),
        Some(h) => h.to_string(),
    };
    let check = || -> std::io::Result<bool> {
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))?
            .next()
            .ok_or_else(|| std::io::Error::other("no address"))?;
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        s.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head)?;
        Ok(head.starts_with(b"HTTP/1.") && &head[9..12] == b"200")
    };
    match check() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("healthcheck: /health on {host}:{port} did not answer 200");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("healthcheck: {host}:{port}: {e}");
            ExitCode::FAILURE
        }
    }
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
