//! The `healthcheck` subcommand: GET /health on this host's relay and exit 0 on a 200, 1
//! otherwise, for container health checks in images without curl. Reads `PORT` and `HOST` (and
//! `.env`) like the relay; runs once and returns, without a runtime or a logger.

use std::{
    io::{Read, Write},
    net::{TcpStream, ToSocketAddrs},
    process::ExitCode,
    time::Duration,
};

/// How long the connect and the read may each take.
const TIMEOUT: Duration = Duration::from_secs(3);

/// Checks the relay on `PORT` (default 8080) of `HOST` (a wildcard means loopback).
pub fn run() -> ExitCode {
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
    match answers_200(&host, port) {
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

/// Whether `GET /health` on `host:port` answers with status 200.
fn answers_200(host: &str, port: u16) -> std::io::Result<bool> {
    let addr = (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head)?;
    Ok(head.starts_with(b"HTTP/1.") && &head[9..12] == b"200")
}
