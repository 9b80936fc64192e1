//! `/proc` readings for `--pids`: CPU seconds and resident memory of the proxy under test and its
//! direct children (Nginx workers). Linux only; a process that is gone reads as zero.

pub(crate) struct ProcSample {
    pub(crate) cpu_s: f64,
    pub(crate) rss_kb: u64,
}

/// CPU seconds (user + system) and resident memory of `pids` and their direct children.
pub(crate) fn proc_sample(pids: &[u32]) -> ProcSample {
    let mut all: Vec<u32> = pids.to_vec();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(stat) = read_stat(pid) {
                if pids.contains(&stat.ppid) && !all.contains(&pid) {
                    all.push(pid);
                }
            }
        }
    }
    let ticks = clock_ticks();
    let mut sample = ProcSample {
        cpu_s: 0.0,
        rss_kb: 0,
    };
    for pid in all {
        if let Some(stat) = read_stat(pid) {
            sample.cpu_s += stat.cpu_ticks as f64 / ticks;
        }
        sample.rss_kb += read_rss_kb(pid).unwrap_or(0);
    }
    sample
}

struct Stat {
    ppid: u32,
    cpu_ticks: u64,
}

fn read_stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; fields resume after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): ppid is field 4, utime 14, stime 15.
    Some(Stat {
        ppid: fields.get(1)?.parse().ok()?,
        cpu_ticks: fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?,
    })
}

fn read_rss_kb(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}
