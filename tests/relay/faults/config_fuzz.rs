//! The relay binary started ~150 times with random values in every variable it reads (empty,
//! negative, past `u64`, not a number, non-ASCII, very long, control characters): each start
//! either serves or exits 64 naming the variable, and none panics. Each child runs with a cleared
//! environment in a fresh directory; every wait is bounded and polls a condition, never a sleep.

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader, Read},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use fake_upstream::Script;
use futures_util::{stream, StreamExt};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use super::clients::Rng;
use crate::common::{child::BIN, poll::poll, tools::TempDir, *};

/// Starts in all, spread evenly over the variables, and how many children run at once.
const STARTS: usize = 150;
const CHILDREN_AT_ONCE: usize = 4;
/// The fuzzer's seed: the same values on every run.
const FUZZ_SEED: u64 = 0xC0F1_6F22_0010_0006;

/// Every variable the relay reads: the rows of the table in docs/configuration.md, and every
/// all-capitals string literal outside the tests of `src/config/*.rs`.
fn variables() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for row in read_repo("docs/configuration.md").lines() {
        if let Some(name) = row
            .strip_prefix("| `")
            .and_then(|rest| rest.split('`').next())
        {
            names.insert(name.to_string());
        }
    }
    let dir = std::fs::read_dir(repo("src/config")).expect("src/config");
    for entry in dir {
        let path = entry.expect("a directory entry").path();
        let text = std::fs::read_to_string(&path).expect("a config source file");
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for candidate in code.split('"').skip(1).step_by(2) {
            let is_name = candidate.len() > 2
                && candidate.starts_with(|c: char| c.is_ascii_uppercase())
                && candidate
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if is_name {
                names.insert(candidate.to_string());
            }
        }
    }
    names
}

/// A value of one of the kinds the fuzzer tries: empty, negative, past `u64`, `u64::MAX`,
/// not a number, a float, non-ASCII, very long, with control characters.
fn random_value(rng: &mut Rng, kind: usize) -> String {
    let pick = |rng: &mut Rng, choices: &[&str]| choices[rng.below(choices.len())].to_string();
    match kind {
        0 => String::new(),
        1 => format!("-{}", rng.next() % 100_000),
        2 => "9".repeat(20 + rng.below(20)),
        3 => u64::MAX.to_string(),
        4 => pick(
            rng,
            &["abc", "yes please", "NaN", "null", "0x1F", "1e3", "ten"],
        ),
        5 => pick(rng, &["1.5", "0.0001", "-2.75", "3.0e8", "1,5"]),
        6 => pick(
            rng,
            &["é", "日本語", "🦀🦀", "１２３", "\u{202e}321", "Ω≈ç√"],
        ),
        7 => pick(rng, &["a", "9", "é"]).repeat(5_000 + rng.below(20_000)),
        _ => pick(
            rng,
            &[
                "\x01",
                "\x1b[31m7\x1b[0m",
                "4\t2",
                "8\n9",
                "\x7f",
                "5\r",
                "a\x08b",
            ],
        ),
    }
}

/// Whether `value` would make the relay listen somewhere other than a port-0 loopback address
/// (fuzzing PORT, ADMIN_PORT or HOST must not bind a fixed port or every interface).
fn binds_elsewhere(name: &str, value: &str) -> bool {
    let v = value.trim();
    match name {
        "PORT" => v.is_empty() || v.parse::<u16>().is_ok_and(|p| p != 0),
        "ADMIN_PORT" => v.parse::<u16>().is_ok_and(|p| p != 0),
        "HOST" => v.is_empty() || v == "localhost" || v.parse::<std::net::IpAddr>().is_ok(),
        _ => false,
    }
}

/// `count` values to try for `name`, of different kinds. No `u64::MAX` where a number is a count
/// of things the relay starts (workers, warm upstream sockets).
fn values_for(rng: &mut Rng, name: &str, count: usize) -> Vec<String> {
    let mut kinds: Vec<usize> = (0..9).collect();
    if matches!(name, "WORKERS" | "UPSTREAM_POOL_SIZE") {
        kinds.retain(|k| *k != 3);
    }
    let mut values = Vec::new();
    while values.len() < count {
        if kinds.is_empty() {
            kinds = (0..9).collect();
        }
        let kind = kinds.remove(rng.below(kinds.len()));
        let value = random_value(rng, kind);
        if !binds_elsewhere(name, &value) {
            values.push(value);
        }
    }
    values
}

/// A child's output, line by line, as the threads reading its pipes collect it.
type Lines = Arc<Mutex<Vec<String>>>;

fn collect(pipe: impl Read + Send + 'static, lines: Lines) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
            let text = String::from_utf8_lossy(&line).trim_end().to_string();
            lines.lock().expect("lines").push(text);
            line.clear();
        }
    })
}

/// The TCP port `pid` listens on, from `/proc/<pid>/net/tcp{,6}` and its socket descriptors.
fn listening_port(pid: u32) -> Option<u16> {
    let inodes: BTreeSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            Some(
                link.strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect();
    ["tcp", "tcp6"].iter().find_map(|table| {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).ok()?;
        text.lines().skip(1).find_map(|row| {
            let fields: Vec<&str> = row.split_whitespace().collect();
            let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            // 0A: LISTEN.
            if *state != "0A" || !inodes.contains(*inode) {
                return None;
            }
            u16::from_str_radix(local.rsplit(':').next()?, 16).ok()
        })
    })
}

/// The status of `GET /health` on 127.0.0.1:`port`, or `None` if the connection ends first.
async fn health(port: u16) -> Option<u16> {
    let request = async {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let get = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        tcp.write_all(get.as_bytes()).await.ok()?;
        let mut head = [0u8; 12];
        tcp.read_exact(&mut head).await.ok()?;
        std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
    };
    tokio::time::timeout(T, request).await.ok().flatten()
}

/// How a fuzzed start went.
enum Start {
    /// Listening and answering `/health` 200 (then killed).
    Served,
    Exited(ExitStatus),
}

/// Waits (bounded) until `child` has exited or listens; returns the exit status, or the port.
async fn started_or_exited(child: &mut Child) -> Result<ExitStatus, u16> {
    let pid = child.id();
    poll("the child listens or exits")
        .every(Duration::from_millis(10))
        .until(|| {
            let seen = match child.try_wait() {
                Ok(Some(status)) => Ok(Ok(status)),
                _ => match listening_port(pid) {
                    Some(port) => Ok(Err(port)),
                    None => Err("neither yet".to_string()),
                },
            };
            async move { seen }
        })
        .await
}

/// Waits (bounded) for `child` to exit.
async fn exited(child: &mut Child) -> ExitStatus {
    poll("the child exits")
        .until(|| {
            let seen = match child.try_wait() {
                Ok(Some(status)) => Ok(status),
                other => Err(format!("{other:?}")),
            };
            async move { seen }
        })
        .await
}

/// Starts the binary with `name=value` on top of a valid test configuration (port 0 on
/// loopback, the fake upstream), and says what went wrong, if anything: it must answer
/// `/health` (and log `listening on`, unless RUST_LOG silenced it) or exit 64 with a line
/// naming `name`; never exit 101 or print "panicked".
async fn fuzz_once(
    run: usize,
    upstream: &str,
    name: &str,
    value: &str,
) -> Result<&'static str, String> {
    let dir = TempDir::new(&format!("config-fuzz-{run}"));
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("OPENAI_API_KEY", TEST_KEY)
        .env("OPENAI_API_URL", upstream)
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env(name, value)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("spawn: {e}"))?;
    let lines = Lines::default();
    let readers = [
        collect(child.stdout.take().expect("stdout"), lines.clone()),
        collect(child.stderr.take().expect("stderr"), lines.clone()),
    ];
    let start = match started_or_exited(&mut child).await {
        Ok(status) => Start::Exited(status),
        Err(port) => match health(port).await {
            Some(200) => {
                let _ = child.kill();
                let _ = child.wait();
                Start::Served
            }
            _ => Start::Exited(exited(&mut child).await),
        },
    };
    for reader in readers {
        let _ = reader.join();
    }
    let text = lines.lock().expect("lines").join("\n");
    if text.contains("panicked") {
        return Err(format!("panicked: {text}"));
    }
    match start {
        Start::Served if name == "RUST_LOG" || text.contains("listening on") => Ok("served"),
        Start::Served => Err(format!("served without logging `listening on`: {text}")),
        Start::Exited(status) if status.code() == Some(64) => {
            let named = text.lines().any(|l| l.contains(name));
            named
                .then_some("exit 64")
                .ok_or(format!("exit 64 without naming it: {text}"))
        }
        Start::Exited(status) => Err(format!("{status}: {text}")),
    }
}

/// The value as a failure message shows it: escaped, and cut when very long.
fn shown(value: &str) -> String {
    let escaped = format!("{value:?}");
    match escaped.char_indices().nth(60) {
        Some((at, _)) => format!("{}... ({} bytes)", &escaped[..at], value.len()),
        None => escaped,
    }
}

/// Every variable the relay reads, with random values (150 starts in all, four at a time): each start either serves (`/health` 200, `listening on` logged) or exits 64 with a line
/// naming the variable; none exits 101 or prints "panicked".
#[actix_web::test]
async fn random_configuration_values_start_or_exit_64() {
    let fake = start_fake(Script::echo()).await;
    let upstream = fake.url();
    let names = variables();
    assert!(
        names.len() > 40 && names.contains("MAX_MESSAGE_SIZE") && names.contains("RUST_LOG"),
        "{names:?}"
    );
    let mut rng = Rng::new(FUZZ_SEED);
    let mut starts = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let count = STARTS / names.len() + usize::from(i < STARTS % names.len());
        for value in values_for(&mut rng, name, count) {
            starts.push((name.clone(), value));
        }
    }
    let upstream = upstream.as_str();
    let outcomes: Vec<Result<&str, String>> = stream::iter(starts.iter().enumerate())
        .map(|(run, (name, value))| async move {
            let outcome = fuzz_once(run, upstream, name, value).await;
            outcome.map_err(|why| format!("{name}={}: {why}", shown(value)))
        })
        .buffer_unordered(CHILDREN_AT_ONCE)
        .collect()
        .await;
    let mut tally = std::collections::BTreeMap::<&str, usize>::new();
    let mut failures = Vec::new();
    for outcome in outcomes {
        match outcome {
            Ok(how) => *tally.entry(how).or_default() += 1,
            Err(failure) => failures.push(failure),
        }
    }
    eprintln!(
        "{} starts over {} variables: {tally:?}, {} failed",
        starts.len(),
        names.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");
    stop_fake(fake).await;
}
