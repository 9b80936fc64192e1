//! The console page (`/console`, issue 13) driven in a real, headless Chromium: the relay
//! in-process on port 0 in front of the fake upstream in demo mode, and `console.mjs` beside this
//! file (Node and playwright-core) opening the page, talking to the model by push to talk and by
//! text (`conversation`), at a phone width and by keyboard alone (`layout`), hands-free and
//! barged in on (`voice`), using the log, session editor and meter (`panels`), and being refused
//! in words (`refusals`); `call.mjs` drives its WebRTC transport against the relay's
//! `/v1/realtime/calls` and the fake's real WebRTC peer (`webrtc`). The scripts write what they
//! saw to a JSON file; these tests assert on it.
//!
//! Needs `chromium` and `node` (Debian's packages) and playwright-core in `RELAY_PLAYWRIGHT` (a
//! directory holding `node_modules`; `bash tests/run.sh` installs it into `target/node`): without
//! them each test says on stderr that it is skipped, unless `RELAY_TESTS_REQUIRE` names the
//! program.

#[path = "../common/mod.rs"]
mod common;

mod conversation;
mod layout;
mod panels;
mod refusals;
mod voice;
mod webrtc;

use std::{
    io::Write,
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use common::tools::tool;

/// A whole browser run (launch, page, conversation, close) must finish within this.
const RUN: Duration = Duration::from_secs(60);

/// What a browser run needs: Chromium, Node and playwright-core; `None` (after a line on
/// stderr) when one is missing.
pub(crate) struct Browser {
    chromium: PathBuf,
    node: PathBuf,
    playwright: PathBuf,
}

impl Browser {
    /// The programs and playwright-core, or `None` after saying which is missing.
    pub(crate) fn find() -> Option<Browser> {
        let chromium = tool("chromium")?;
        let node = tool("node")?;
        let Some(playwright) = std::env::var_os("RELAY_PLAYWRIGHT").filter(|p| !p.is_empty())
        else {
            let test = std::thread::current().name().unwrap_or("test").to_string();
            let _ = writeln!(
                std::io::stderr(),
                "{test}: skipped: RELAY_PLAYWRIGHT is not set (bash tests/run.sh installs \
                 playwright-core into target/node and sets it)"
            );
            return None;
        };
        Some(Browser {
            chromium,
            node,
            playwright: PathBuf::from(playwright),
        })
    }

    /// Runs `console.mjs MODE URL OUT [EXTRA]`; see [`Browser::script`].
    pub(crate) async fn run(
        &self,
        mode: &str,
        url: &str,
        extra: Option<&str>,
    ) -> serde_json::Value {
        self.script("console.mjs", mode, url, extra.as_slice())
            .await
    }

    /// Runs `call.mjs MODE URL OUT ARGS...` (the console's WebRTC transport); see
    /// [`Browser::script`].
    pub(crate) async fn call(&self, mode: &str, url: &str, args: &[&str]) -> serde_json::Value {
        self.script("call.mjs", mode, url, args).await
    }

    /// Runs `tests/browser/SCRIPT MODE URL OUT ARGS...` on a blocking thread, bounded by
    /// [`RUN`], and returns the JSON it wrote; panics, with its output, when it did not write
    /// one or reports a failure.
    async fn script(
        &self,
        script: &str,
        mode: &str,
        url: &str,
        args: &[&str],
    ) -> serde_json::Value {
        let dir = common::tools::TempDir::new("browser");
        let out = dir.path().join("out.json");
        let mut cmd = Command::new(&self.node);
        cmd.arg(common::repo(&format!("tests/browser/{script}")))
            .args([mode, url])
            .arg(&out)
            .args(args)
            .env("RELAY_PLAYWRIGHT", &self.playwright)
            .env("RELAY_CHROMIUM", &self.chromium);
        let what = format!("{cmd:?}");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let pid = child.id().to_string();
        let waited = tokio::time::timeout(
            RUN,
            tokio::task::spawn_blocking(|| child.wait_with_output()),
        )
        .await;
        let Ok(done) = waited else {
            // SIGTERM, not SIGKILL: playwright closes the browser it launched on SIGTERM.
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            panic!("{what} did not finish within {RUN:?}");
        };
        let done = done
            .expect("the blocking task ran")
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let text = std::fs::read_to_string(&out).unwrap_or_else(|e| {
            panic!(
                "{what} wrote no result ({e}); status {:?}\nstdout: {}\nstderr: {}",
                done.status,
                String::from_utf8_lossy(&done.stdout),
                String::from_utf8_lossy(&done.stderr)
            )
        });
        let result: serde_json::Value = serde_json::from_str(&text).expect("result is JSON");
        assert!(
            result.get("failure").is_none(),
            "the browser run failed: {result:#}\nstderr: {}",
            String::from_utf8_lossy(&done.stderr)
        );
        assert_no_errors(&result);
        result
    }
}

/// The page logged no error and threw nothing.
fn assert_no_errors(result: &serde_json::Value) {
    assert_eq!(result["pageErrors"], serde_json::json!([]), "{result:#}");
    assert_eq!(result["consoleErrors"], serde_json::json!([]), "{result:#}");
}
