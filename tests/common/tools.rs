//! The outside programs some tests run (Nginx, Prometheus, promtool, Alertmanager, amtool), and
//! what running them needs: a scratch directory and a child killed on drop, a free port.
//!
//! A missing program skips its test with one line on stderr, so plain `cargo test` passes on a
//! machine without them; `bash tests/run.sh` names the programs it has (or installed, as root)
//! in `RELAY_TESTS_REQUIRE`, and for those a missing program fails the test instead.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
};

/// The absolute path of the program `name`, searched in `RELAY_TOOLS_PATH` when set, else in
/// PATH, /usr/sbin and /sbin (Debian's nginx). `None`, after a "skipped" line on stderr, when it
/// is missing and `RELAY_TESTS_REQUIRE` does not list it; a panic when that list does.
pub fn tool(name: &str) -> Option<PathBuf> {
    let dirs: Vec<PathBuf> = match std::env::var_os("RELAY_TOOLS_PATH").filter(|p| !p.is_empty()) {
        Some(path) => std::env::split_paths(&path).collect(),
        None => {
            let path = std::env::var_os("PATH").unwrap_or_default();
            std::env::split_paths(&path)
                .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
                .collect()
        }
    };
    let required = std::env::var("RELAY_TESTS_REQUIRE").unwrap_or_default();
    let found = find_tool(name, &dirs, &required);
    if found.is_none() {
        let test = std::thread::current().name().unwrap_or("test").to_string();
        // Straight to stderr, not eprintln!: libtest hides what a passing test prints that way.
        let _ = writeln!(
            std::io::stderr(),
            "{test}: skipped: {name} not installed (bash tests/run.sh installs it)"
        );
    }
    found
}

/// `name` in the first of `dirs` that has it; `None` when none has it, unless the
/// comma-separated `required` list names it: then a panic that says so.
pub fn find_tool(name: &str, dirs: &[PathBuf], required: &str) -> Option<PathBuf> {
    let found = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file());
    if found.is_none() && required.split(',').any(|t| t.trim() == name) {
        panic!(
            "{name} is not installed, and RELAY_TESTS_REQUIRE={required} says this test must run \
             (bash tests/run.sh installs it when run as root)"
        );
    }
    found
}

/// A scratch directory under the system's temp directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh directory whose name starts with `relay-{name}-`.
    pub fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!("relay-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed on drop (also when the test panics).
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port that was free a moment ago (bound on 127.0.0.1:0, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// How long a local tool may take. `promtool test rules` evaluates every alert scenario and took
/// over 10 s (the tests' usual bound, `T`) once on a CI machine whose two cores were busy with a build.
const TOOL_T: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs `cmd` to its end, with no stdin and its output captured; panics if that takes longer
/// than [`TOOL_T`] (these programs only read and write local files: a hang is a bug worth seeing).
pub fn output(cmd: &mut Command) -> Output {
    let what = format!("{cmd:?}");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(TOOL_T)
        .unwrap_or_else(|_| panic!("{what} did not finish within {TOOL_T:?}"))
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Rewrites every directive line of `text` (the shipped `file`) that ends in `# test:NAME` with
/// the replacement for NAME, indented like it; a replacement may be several lines, or none (the
/// line is dropped). Panics when a marker has no replacement or a replacement finds no marker, so
/// the shipped file and the test that runs it cannot drift apart unnoticed.
pub fn rewrite(file: &str, text: &str, replacements: &[(&str, String)]) -> String {
    let mut used = vec![false; replacements.len()];
    let mut out = String::new();
    for line in text.lines() {
        let marker = line.split_once("# test:").map(|(_, m)| m.trim());
        let Some(marker) = marker.filter(|_| !line.trim_start().starts_with('#')) else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let i = replacements
            .iter()
            .position(|(name, _)| *name == marker)
            .unwrap_or_else(|| panic!("no test replacement for marker {marker:?}"));
        used[i] = true;
        let indent = &line[..line.len() - line.trim_start().len()];
        for new in replacements[i].1.lines() {
            out.push_str(indent);
            out.push_str(new);
            out.push('\n');
        }
    }
    for (i, (name, _)) in replacements.iter().enumerate() {
        assert!(used[i], "{file} lost its `# test:{name}` line");
    }
    out
}
