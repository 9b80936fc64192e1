//! The daily usage [`Ledger`]: totals for all clients, per identity and per model, that budgets
//! are checked against; it rolls over at UTC midnight and survives restarts through
//! `USAGE_STATE_FILE`. The registry owns the one ledger (one writer: saves must not run
//! concurrently) and saves it periodically and on drain; `/stats` reads it.

use std::{
    collections::BTreeMap,
    fs, io,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use super::Usage;

/// UTC day number (days since 1970-01-01) of a unix time.
pub(crate) fn utc_day(unix_seconds: u64) -> u64 {
    unix_seconds / 86_400
}

/// At most this many entries in [`Ledger::by_identity`], counting [`OTHER`].
const MAX_IDENTITIES: usize = 100_000;
/// At most this many entries in [`Ledger::by_model`], counting [`OTHER`].
const MAX_MODELS: usize = 1_000;
/// The key that identities (or models) beyond the cap are aggregated under.
const OTHER: &str = "other";

/// Daily usage totals: all clients, per identity, per model; resets at UTC midnight; survives
/// restarts through a state file.
///
/// State is bounded: the per-identity and per-model maps only hold today, and hold at most
/// `MAX_IDENTITIES` and `MAX_MODELS` entries; usage of further names is added under
/// `OTHER`. An identity folded into `other` is held to the global budget only.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Ledger {
    pub day: u64,
    pub all: Usage,
    pub by_identity: BTreeMap<String, Usage>,
    pub by_model: BTreeMap<String, Usage>,
    /// Lifetime totals (not reset daily), for /stats.
    pub lifetime: Usage,
}

/// Which daily budget is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Budget {
    Global,
    Client,
}

impl Ledger {
    /// Rolls the daily totals over if `day` is later than self.day (lifetime kept). An earlier
    /// `day` (the clock went back) changes nothing: counts keep going into the current day.
    pub(crate) fn roll(&mut self, day: u64) {
        if day > self.day {
            self.day = day;
            self.all = Usage::default();
            self.by_identity.clear();
            self.by_model.clear();
        }
    }

    /// Adds usage for identity and model on `day` (rolling first).
    pub(crate) fn record(&mut self, identity: &str, model: &str, usage: &Usage, day: u64) {
        self.roll(day);
        self.all.add(usage);
        self.lifetime.add(usage);
        add_capped(&mut self.by_identity, identity, usage, MAX_IDENTITIES);
        add_capped(&mut self.by_model, model, usage, MAX_MODELS);
    }

    /// Which budget, if any, is spent (>= limit) for this identity today: global checked first.
    /// None limits = unlimited. A `day` later than the ledger's counts as a fresh day.
    pub(crate) fn exhausted(
        &self,
        identity: &str,
        day: u64,
        global_limit: Option<u64>,
        client_limit: Option<u64>,
    ) -> Option<Budget> {
        let fresh = day > self.day;
        let spent_all = if fresh { 0 } else { self.all.billable() };
        if global_limit.is_some_and(|limit| spent_all >= limit) {
            return Some(Budget::Global);
        }
        let spent_client = match self.by_identity.get(identity) {
            Some(usage) if !fresh => usage.billable(),
            _ => 0,
        };
        if client_limit.is_some_and(|limit| spent_client >= limit) {
            return Some(Budget::Client);
        }
        None
    }

    /// Writes JSON atomically: to `<path>.tmp` in the same directory, fsync (File::sync_all),
    /// rename over `path`; creates parent dir if missing. Not safe to call concurrently for the
    /// same path.
    pub(crate) fn save(&self, path: &Path) -> io::Result<()> {
        let json = serde_json::to_vec(self).map_err(io::Error::other)?;
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(dir) = parent {
            fs::create_dir_all(dir)?;
        }
        let tmp = with_suffix(path, ".tmp");
        {
            let mut file = fs::File::create(&tmp)?;
            io::Write::write_all(&mut file, &json)?;
            file.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        // Make the rename itself durable. Best effort: not every platform can open a directory.
        #[cfg(unix)]
        if let Ok(dir) = fs::File::open(parent.unwrap_or(Path::new("."))) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// Loads a saved ledger; a missing file → Ok(Ledger::default()); a file that is not a ledger
    /// → Err of kind `InvalidData`; other read errors are passed on.
    pub fn load(path: &Path) -> io::Result<Ledger> {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Ledger::default()),
            Err(e) => return Err(e),
        };
        serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// [`Ledger::load`], never failing: a corrupt file is renamed to `<path>.corrupt-<unix>` and
    /// the ledger starts empty; an unreadable one is left alone and the ledger starts empty. The
    /// second value is a warning for the caller to log when either happened.
    pub(crate) fn load_or_quarantine(path: &Path) -> (Ledger, Option<String>) {
        match Ledger::load(path) {
            Ok(ledger) => (ledger, None),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                let unix = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let aside = with_suffix(path, &format!(".corrupt-{unix}"));
                let warning = match fs::rename(path, &aside) {
                    Ok(()) => format!(
                        "usage state file {} is corrupt ({e}); moved it to {} and started usage totals from zero",
                        path.display(),
                        aside.display()
                    ),
                    Err(re) => format!(
                        "usage state file {} is corrupt ({e}) and could not be moved aside ({re}); started usage totals from zero",
                        path.display()
                    ),
                };
                (Ledger::default(), Some(warning))
            }
            Err(e) => (
                Ledger::default(),
                Some(format!(
                    "usage state file {} could not be read ({e}); started usage totals from zero",
                    path.display()
                )),
            ),
        }
    }
}

/// Adds `usage` under `name`, or under [`OTHER`] when `name` is new and the map is full.
fn add_capped(map: &mut BTreeMap<String, Usage>, name: &str, usage: &Usage, cap: usize) {
    if let Some(entry) = map.get_mut(name) {
        entry.add(usage);
        return;
    }
    // Keep one slot for `other`, so the map never exceeds `cap` entries.
    let key = if map.len() + 1 >= cap { OTHER } else { name };
    map.entry(key.to_owned()).or_default().add(usage);
}

/// `path` with `suffix` appended to its file name (`state.json` → `state.json.tmp`).
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protection::usage::{
        parse_usage,
        tests::{tokens, RESPONSE_DONE},
    };

    fn scratch_path(name: &str) -> PathBuf {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        std::env::temp_dir()
            .join(format!("relay-usage-{}-{nanos}-{name}", std::process::id()))
            .join("state.json")
    }

    /// Day numbers change at UTC midnight.
    #[test]
    fn utc_day_boundaries() {
        assert_eq!(utc_day(0), 0);
        assert_eq!(utc_day(86_399), 0);
        assert_eq!(utc_day(86_400), 1);
        // 2026-05-01T00:00:00Z
        assert_eq!(utc_day(1_777_593_600), 20_574);
    }

    /// record adds to all, identity, model and lifetime; a later day resets all but lifetime.
    #[test]
    fn ledger_record_and_roll() {
        let mut ledger = Ledger::default();
        ledger.record("alice", "gpt-realtime", &tokens(10), 100);
        ledger.record("bob", "gpt-realtime-mini", &tokens(5), 100);
        ledger.record("alice", "gpt-realtime-mini", &tokens(1), 100);
        assert_eq!(ledger.day, 100);
        assert_eq!(ledger.all.billable(), 16);
        assert_eq!(ledger.by_identity["alice"].billable(), 11);
        assert_eq!(ledger.by_identity["bob"].billable(), 5);
        assert_eq!(ledger.by_model["gpt-realtime-mini"].billable(), 6);
        assert_eq!(ledger.lifetime.billable(), 16);

        // A clock that steps back keeps counting into the current day.
        ledger.record("bob", "gpt-realtime", &tokens(2), 99);
        assert_eq!(ledger.day, 100);
        assert_eq!(ledger.by_identity["bob"].billable(), 7);

        ledger.record("carol", "gpt-realtime", &tokens(4), 101);
        assert_eq!(ledger.day, 101);
        assert_eq!(ledger.all.billable(), 4);
        assert_eq!(ledger.by_identity.len(), 1);
        assert_eq!(ledger.by_model.len(), 1);
        assert_eq!(ledger.lifetime.billable(), 22);
    }

    /// The global budget is checked first, then the client's; both reset on a new day.
    #[test]
    fn ledger_exhausted_budgets() {
        let mut ledger = Ledger::default();
        ledger.record("alice", "m", &tokens(60), 7);
        ledger.record("bob", "m", &tokens(30), 7);

        assert_eq!(ledger.exhausted("alice", 7, None, None), None);
        assert_eq!(ledger.exhausted("alice", 7, None, Some(61)), None);
        assert_eq!(
            ledger.exhausted("alice", 7, None, Some(60)),
            Some(Budget::Client)
        );
        assert_eq!(ledger.exhausted("bob", 7, None, Some(60)), None);
        assert_eq!(ledger.exhausted("nobody", 7, None, Some(1)), None);
        assert_eq!(ledger.exhausted("bob", 7, Some(91), Some(60)), None);
        assert_eq!(
            ledger.exhausted("bob", 7, Some(90), Some(60)),
            Some(Budget::Global)
        );
        assert_eq!(
            ledger.exhausted("alice", 7, Some(90), Some(10)),
            Some(Budget::Global)
        );
        // Tomorrow, before anything rolled the ledger over, both budgets are fresh.
        assert_eq!(ledger.exhausted("alice", 8, Some(90), Some(10)), None);
        // A zero limit allows nothing.
        assert_eq!(
            ledger.exhausted("carol", 8, Some(0), None),
            Some(Budget::Global)
        );
    }

    /// Identities beyond the cap are aggregated under `other`, so the map stays bounded.
    #[test]
    fn ledger_caps_identities() {
        let mut ledger = Ledger::default();
        for i in 0..MAX_IDENTITIES + 50 {
            ledger.record(&format!("client-{i}"), "m", &tokens(1), 1);
        }
        assert_eq!(ledger.by_identity.len(), MAX_IDENTITIES);
        assert_eq!(ledger.by_identity[OTHER].billable(), 51);
        assert_eq!(ledger.all.billable(), (MAX_IDENTITIES + 50) as u64);
        // Known identities keep their own entry.
        ledger.record("client-0", "m", &tokens(1), 1);
        assert_eq!(ledger.by_identity["client-0"].billable(), 2);
    }

    /// save then load gives back the same ledger, through a directory save created.
    #[test]
    fn ledger_save_load_round_trip() -> io::Result<()> {
        let path = scratch_path("roundtrip");
        let mut ledger = Ledger::default();
        ledger.record(
            "alice",
            "gpt-realtime",
            &parse_usage(RESPONSE_DONE).unwrap_or_default(),
            20_574,
        );
        ledger.record("bob", "gpt-realtime-mini", &tokens(9), 20_574);
        ledger.save(&path)?;
        assert!(!with_suffix(&path, ".tmp").exists());
        ledger.record("bob", "gpt-realtime-mini", &tokens(1), 20_574);
        ledger.save(&path)?;

        let loaded = Ledger::load(&path)?;
        assert_eq!(loaded.day, 20_574);
        assert_eq!(loaded.all, ledger.all);
        assert_eq!(loaded.lifetime, ledger.lifetime);
        assert_eq!(loaded.by_identity, ledger.by_identity);
        assert_eq!(loaded.by_model, ledger.by_model);
        assert_eq!(Ledger::load_or_quarantine(&path).1, None);

        if let Some(dir) = path.parent() {
            fs::remove_dir_all(dir)?;
        }
        Ok(())
    }

    /// A missing state file is an empty ledger, not an error.
    #[test]
    fn ledger_load_missing_is_empty() -> io::Result<()> {
        let path = scratch_path("missing");
        let ledger = Ledger::load(&path)?;
        assert_eq!(ledger.day, 0);
        assert!(ledger.by_identity.is_empty());
        let (ledger, warning) = Ledger::load_or_quarantine(&path);
        assert_eq!(ledger.all, Usage::default());
        assert_eq!(warning, None);
        Ok(())
    }

    /// A corrupt state file is an error for load, and is moved aside by load_or_quarantine.
    #[test]
    fn ledger_corrupt_file_is_quarantined() -> io::Result<()> {
        let path = scratch_path("corrupt");
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        fs::create_dir_all(&dir)?;
        fs::write(&path, b"{\"day\": 3, \"all\": {\"input_tok")?;

        let err = Ledger::load(&path).err().map(|e| e.kind());
        assert_eq!(err, Some(io::ErrorKind::InvalidData));

        let (ledger, warning) = Ledger::load_or_quarantine(&path);
        assert_eq!(ledger.day, 0);
        assert!(warning.is_some_and(|w| w.contains("corrupt")));
        assert!(!path.exists());
        let aside: Vec<String> = fs::read_dir(&dir)?
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(aside.len(), 1);
        assert!(aside[0].starts_with("state.json.corrupt-"));

        // The next save starts a fresh file in the same place.
        ledger.save(&path)?;
        assert_eq!(Ledger::load(&path)?.day, 0);
        fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
