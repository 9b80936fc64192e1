//! `fake` and `free-port`: the fake Realtime server as a process of its own, until killed, and a
//! free loopback port for scripts. With the `webrtc` feature the fake answers WebRTC calls with a
//! real webrtc-rs peer (demo mode on their data channels); without it, 501.

use std::{io::Write as _, time::Duration};

use fake_upstream::{FakeUpstream, Mode, Script};

use crate::args::{Args, Failure};

pub(crate) fn fake(rest: &[String]) -> Result<(), Failure> {
    let args = Args::parse(
        rest,
        &[
            "port",
            "mode",
            "handshake-delay-ms",
            "stream-bytes",
            "stream-interval-ms",
        ],
        &[],
    )?;
    let port: u16 = args.num("port")?.unwrap_or(0);
    let stream_bytes: usize = args.num("stream-bytes")?.unwrap_or(6400);
    let interval_ms: u64 = args.num("stream-interval-ms")?.unwrap_or(0);
    let mode = match args.str("mode").unwrap_or("echo") {
        "echo" => Mode::Echo,
        "demo" => Mode::Demo,
        "silent" => Mode::Silent,
        "stream" => Mode::Stream {
            message_bytes: stream_bytes,
            interval: (interval_ms > 0).then(|| Duration::from_millis(interval_ms)),
            count: None,
        },
        other => return Err(Failure::Usage(format!("--mode: unknown mode {other:?}"))),
    };
    let script = Script {
        handshake_delay: Duration::from_millis(args.num("handshake-delay-ms")?.unwrap_or(0)),
        // A benchmark sends millions of messages; keeping them would be a memory leak.
        record_messages: false,
        ..Script::with_mode(mode)
    };
    actix_web::rt::System::new().block_on(async move {
        let fake = FakeUpstream::start_on_port(script, port)
            .await
            .map_err(|e| Failure::Run(format!("cannot start the fake upstream: {e}")))?;
        let mut out = std::io::stdout();
        let _ = writeln!(out, "listening {}", fake.url());
        let _ = out.flush();
        // Runs until the process is killed.
        std::future::pending::<()>().await;
        Ok(())
    })
}

pub(crate) fn free_port() -> Result<(), Failure> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| Failure::Run(format!("cannot bind 127.0.0.1:0: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| Failure::Run(format!("no local address: {e}")))?
        .port();
    println!("{port}");
    Ok(())
}
