//! tests/run.sh, run as a copy in dry-run mode with stub programs: what it installs, requires
//! and reports, as root and not; and the program lookup the tests share with it.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use crate::common::{
    read_repo, repo,
    tools::{find_tool, output, TempDir},
};

/// Whether these tests run as root.
fn is_root() -> bool {
    let out = output(Command::new("id").arg("-u"));
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// Runs a copy of tests/run.sh with RELAY_RUN_SH_DRY_RUN=1 and `args`, the programs looked for
/// only in a directory holding stubs named `present`; as `nobody` when `unprivileged` and these
/// tests run as root, else as this user.
fn dry_run(present: &[&str], unprivileged: bool, args: &[&str]) -> Output {
    let dir = TempDir::new("run-sh");
    let d = dir.path();
    std::fs::create_dir_all(d.join("tests")).expect("tests dir");
    std::fs::create_dir_all(d.join("bin")).expect("bin dir");
    std::fs::write(d.join("tests/run.sh"), read_repo("tests/run.sh")).expect("copy run.sh");
    for tool in present {
        std::fs::write(d.join("bin").join(tool), "#!/bin/sh\n").expect("stub");
        std::fs::set_permissions(d.join("bin").join(tool), PermissionsExt::from_mode(0o755))
            .expect("chmod stub");
    }
    // `nobody` must reach the copy.
    for sub in ["", "tests", "bin"] {
        std::fs::set_permissions(d.join(sub), PermissionsExt::from_mode(0o755)).expect("chmod");
    }
    let vars = [
        format!("RELAY_TOOLS_PATH={}", d.join("bin").display()),
        "RELAY_RUN_SH_DRY_RUN=1".to_string(),
        "PATH=/usr/local/bin:/usr/bin:/bin".to_string(),
    ];
    let script = d.join("tests/run.sh");
    let mut cmd = if unprivileged && is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--", "env"]);
        c
    } else {
        Command::new("env")
    };
    cmd.args(&vars).arg("bash").arg(&script).args(args);
    output(&mut cmd)
}

/// The programs tests/run.sh looks for, in its order.
fn run_sh_tools() -> Vec<String> {
    let script = read_repo("tests/run.sh");
    let line = script
        .lines()
        .find_map(|l| l.strip_prefix("tools=("))
        .expect("tools=(...) in tests/run.sh");
    line.trim_end_matches(')')
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Without root, tests/run.sh runs `cargo test --workspace --locked ARGS` requiring only the programs it has, then lists the tests it could not run and the one command that installs their programs, and exits 1; it installs nothing.
#[test]
fn run_sh_without_root_runs_what_it_can_then_lists_the_rest() {
    let out = dry_run(&["nginx", "openssl"], true, &["--test", "nginx"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let all = format!("{stdout}\n{stderr}");
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        stdout.contains(
            "dry run: env RELAY_TESTS_REQUIRE=nginx,openssl cargo test --workspace --locked --test nginx\n"
        ),
        "{all}"
    );
    assert!(!stdout.contains("apt-get"), "{all}");
    assert!(
        stderr.contains(
            "  tests/prometheus/ (needs promtool prometheus prometheus-alertmanager amtool)"
        ),
        "{all}"
    );
    assert!(
        stderr.contains("  tests/redis/ (needs redis-server)"),
        "{all}"
    );
    assert!(
        stderr.contains("  tests/browser/ (needs chromium)"),
        "{all}"
    );
    assert!(!stderr.contains("tests/nginx/"), "{all}");
    assert!(
        stderr.contains(
            "  sudo apt-get update && sudo apt-get install -y prometheus prometheus-alertmanager redis-server chromium nodejs\n"
        ),
        "{all}"
    );

    // With every program there, it requires them all and its exit status is cargo's.
    let tools = run_sh_tools();
    let names: Vec<&str> = tools.iter().map(String::as_str).collect();
    let out = dry_run(&names, true, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "dry run: env RELAY_TESTS_REQUIRE={} cargo test --workspace --locked\n",
            tools.join(",")
        )),
        "{stdout}"
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// As root, tests/run.sh says what it installs and why before apt-get runs, then requires every program.
#[test]
fn run_sh_as_root_says_what_it_installs_first() {
    if !is_root() {
        eprintln!("skipped: needs root, as in CI");
        return;
    }
    let out = dry_run(&["nginx"], false, &["-p", "openai-realtime-relay"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tools = run_sh_tools().join(",");
    let steps = [
        "== installing openssl prometheus prometheus-alertmanager redis-server chromium nodejs with apt-get (missing: openssl promtool prometheus prometheus-alertmanager amtool redis-server chromium node)\n".to_string(),
        "dry run: apt-get update\n".to_string(),
        "dry run: apt-get install -y --no-install-recommends openssl prometheus prometheus-alertmanager redis-server chromium nodejs\n".to_string(),
        format!("dry run: env RELAY_TESTS_REQUIRE={tools} cargo test --workspace --locked -p openai-realtime-relay\n"),
    ];
    let mut at = 0;
    for step in &steps {
        let i = stdout[at..]
            .find(step.as_str())
            .unwrap_or_else(|| panic!("{step:?} not after byte {at} of:\n{stdout}"));
        at += i + step.len();
    }
}

/// Every `.rs` file under `dir`, at any depth.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// Every program a test asks for with `tool(NAME)` is one tests/run.sh installs and requires, and it names no other.
#[test]
fn run_sh_knows_every_program_the_tests_run() {
    let mut asked = std::collections::BTreeSet::new();
    for path in rust_files(&repo("tests")) {
        let text = std::fs::read_to_string(&path).expect("read test");
        for part in text.split("tool(\"").skip(1) {
            asked.insert(part.split('"').next().expect("name").to_string());
        }
    }
    let known: std::collections::BTreeSet<String> = run_sh_tools().into_iter().collect();
    assert!(!asked.is_empty());
    assert_eq!(asked, known);
}

/// A missing program skips its test, unless RELAY_TESTS_REQUIRE lists it: then the test fails.
#[test]
fn missing_program_skips_unless_required() {
    let dir = TempDir::new("find-tool");
    let dirs: Vec<PathBuf> = vec![dir.path().to_path_buf()];
    assert_eq!(find_tool("nginx", &dirs, ""), None);
    assert_eq!(find_tool("nginx", &dirs, "promtool,prometheus"), None);
    let required = std::panic::catch_unwind(|| find_tool("nginx", &dirs, "promtool,nginx"));
    assert!(required.is_err(), "a required program was skipped");
    std::fs::write(dir.path().join("nginx"), "").expect("stub");
    assert_eq!(
        find_tool("nginx", &dirs, "nginx"),
        Some(dir.path().join("nginx"))
    );
}
