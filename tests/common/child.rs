//! The real `openai-realtime-relay` binary as a child process: a cleared environment (only PATH)
//! in a fresh directory (so no `.env` is read), its stdout and stderr read line by line from
//! threads into a channel, every wait bounded by [`T`], never a sleep.

use std::{
    io::{BufRead, BufReader, Read},
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
};

use tokio::sync::mpsc;

use super::T;

pub const BIN: &str = env!("CARGO_BIN_EXE_openai-realtime-relay");

/// A running child relay (or `healthcheck`) and the lines it has written (stdout and stderr,
/// interleaved). Killed, and its directory removed, on drop.
pub struct Process {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
    dir: PathBuf,
}

/// A fresh, empty working directory for one test.
fn workdir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("relay-child-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

fn forward(pipe: impl Read + Send + 'static, tx: mpsc::UnboundedSender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
}

impl Process {
    /// Starts the binary with only PATH and `env` set, in a fresh directory (so no `.env`).
    pub fn spawn(test: &str, args: &[&str], env: &[(&str, &str)]) -> Process {
        Process::spawn_with_files(test, args, env, &[])
    }

    /// Like [`Process::spawn`]; `files` are written into the fresh directory first.
    pub fn spawn_with_files(
        test: &str,
        args: &[&str],
        env: &[(&str, &str)],
        files: &[(&str, &str)],
    ) -> Process {
        let dir = workdir(test);
        for (name, text) in files {
            std::fs::write(dir.join(name), text).expect("write file");
        }
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("the binary starts");
        let (tx, lines) = mpsc::unbounded_channel();
        forward(child.stdout.take().expect("stdout"), tx.clone());
        forward(child.stderr.take().expect("stderr"), tx);
        Process {
            child,
            lines,
            seen: Vec::new(),
            dir,
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A `kB` field of the child's `/proc/<pid>/status` (`VmRSS`, `VmHWM`, ...), in KiB.
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("/proc/<pid>/status");
        let prefix = format!("{field}:");
        status
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc/<pid>/status"))
    }

    /// The child's resident memory now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS")
    }

    /// The child's peak resident memory so far, in KiB.
    pub fn peak_kib(&self) -> u64 {
        self.status_kib("VmHWM")
    }

    /// How many file descriptors the child has open now.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("/proc/<pid>/fd")
            .count()
    }

    /// `name` inside the child's working directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Waits for the first line (from now on) that contains `needle`.
    pub async fn wait_line(&mut self, needle: &str) -> String {
        let wait = async {
            while let Some(line) = self.lines.recv().await {
                self.seen.push(line.clone());
                if line.contains(needle) {
                    return Some(line);
                }
            }
            None
        };
        match tokio::time::timeout(T, wait).await {
            Ok(Some(line)) => line,
            Ok(None) => panic!("exited without logging {needle:?}: {:#?}", self.seen),
            Err(_) => panic!("no line with {needle:?} within {T:?}: {:#?}", self.seen),
        }
    }

    /// The `host:port` from the startup line `... listening on HOST:PORT ...` (a JSON log line
    /// carries it in its message too).
    pub async fn listening(&mut self) -> String {
        let line = self.wait_line("listening on ").await;
        let rest = line.split("listening on ").nth(1).expect("text after it");
        let addr = rest.split_whitespace().next().expect("an address");
        assert!(addr.starts_with("127.0.0.1:"), "{line}");
        let port: u16 = addr["127.0.0.1:".len()..].parse().expect("a port");
        assert_ne!(port, 0, "{line}");
        addr.to_string()
    }

    /// Sends `signal` (`TERM`, `INT`, `HUP`) with kill(1): the crate has no libc dependency.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill -{signal} failed: {status:?}");
    }

    /// Waits for the process to close its output and exit; returns its status and every line.
    pub async fn exit(mut self) -> (ExitStatus, Vec<String>) {
        let drain = async {
            while let Some(line) = self.lines.recv().await {
                self.seen.push(line);
            }
        };
        if tokio::time::timeout(T, drain).await.is_err() {
            let _ = self.child.kill();
            panic!("the process did not exit: {:#?}", self.seen);
        }
        // Both pipes are closed, so the process has exited or is about to.
        let status = self.child.wait().expect("wait");
        (status, std::mem::take(&mut self.seen))
    }

    /// Kills the relay and returns every line it wrote.
    pub async fn kill(mut self) -> Vec<String> {
        let _ = self.child.kill();
        self.exit().await.1
    }

    /// SIGTERM, then every line until the process closes its output.
    pub async fn finish(self) -> Vec<String> {
        self.signal("TERM");
        self.exit().await.1
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
