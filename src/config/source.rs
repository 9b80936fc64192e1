//! Where configuration comes from and how one variable is read: the [`Source`] trait (the process
//! environment in production, a map in tests), the typed reads of [`Reader`], and the errors they
//! collect. A bad value is recorded and replaced by its default, so reading goes on and every
//! problem is reported at once; `Config::from_source` (in `config/mod.rs`) and the group readers
//! beside it are the only users.

use std::{collections::HashMap, fmt, time::Duration};

use super::is_query_safe;
use crate::secret::Secret;

/// Where variables come from: the environment in production, a map in tests.
pub trait Source {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment (after `.env` has been loaded into it).
pub struct Env;

impl Source for Env {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Source for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
}

impl Source for HashMap<&str, &str> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).map(|v| v.to_string())
    }
}

/// One bad variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "OPENAI_API_KEY environment variable is required\n  \
         to try the relay without a key, run it with --demo-if-no-key \
         (cargo run --release -- --demo-if-no-key); to use OpenAI, put OPENAI_API_KEY=sk-... \
         in a .env file in the working directory (see .env.example) or export it"
    )]
    MissingApiKey,
    #[error("{name}: {problem} (got {value:?})")]
    Invalid {
        name: &'static str,
        value: String,
        problem: String,
    },
    #[error("{name}: cannot read {path}: {problem}")]
    Unreadable {
        name: &'static str,
        path: String,
        problem: String,
    },
}

/// All the problems found, in the order the variables are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads typed values from a [`Source`], collecting every problem instead of stopping at the
/// first.
pub(crate) struct Reader<'a> {
    source: &'a dyn Source,
    errors: Vec<ConfigError>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(source: &'a dyn Source) -> Self {
        Reader {
            source,
            errors: Vec::new(),
        }
    }

    /// Every problem found so far, or `Ok` when there was none.
    pub(crate) fn finish(self) -> Result<(), ConfigErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(self.errors))
        }
    }

    pub(crate) fn push(&mut self, error: ConfigError) {
        self.errors.push(error);
    }

    /// The trimmed value, with empty treated as unset (a `.env` line `PORT=` means "default").
    pub(crate) fn raw(&self, name: &str) -> Option<String> {
        self.source
            .get(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    pub(crate) fn secret(&self, name: &str) -> Option<Secret> {
        self.raw(name).map(Secret::new)
    }

    pub(crate) fn invalid(&mut self, name: &'static str, value: &str, problem: impl Into<String>) {
        self.push(ConfigError::Invalid {
            name,
            value: value.to_string(),
            problem: problem.into(),
        });
    }

    pub(crate) fn string(&self, name: &str, default: &str) -> String {
        self.raw(name).unwrap_or_else(|| default.to_string())
    }

    pub(crate) fn number<T>(&mut self, name: &'static str, default: T, min: T) -> T
    where
        T: std::str::FromStr + Copy + PartialOrd + fmt::Display,
    {
        let Some(v) = self.raw(name) else {
            return default;
        };
        match v.parse::<T>() {
            Ok(n) if n >= min => n,
            Ok(_) => {
                self.invalid(name, &v, format!("must be at least {min}"));
                default
            }
            // All digits but no `T`: too large, which "a whole number" would misstate.
            Err(_) if v.bytes().all(|b| b.is_ascii_digit()) => {
                self.invalid(name, &v, "is too large");
                default
            }
            Err(_) => {
                self.invalid(name, &v, "must be a whole number");
                default
            }
        }
    }

    /// A TCP port: 1 to 65535, or 0 for any free port (the log names the one picked).
    pub(crate) fn port(&mut self, name: &'static str, default: u16) -> u16 {
        let Some(v) = self.raw(name) else {
            return default;
        };
        match v.parse::<u16>() {
            Ok(n) => n,
            Err(_) => {
                self.invalid(
                    name,
                    &v,
                    "must be a port number between 1 and 65535 (or 0 for any free port)",
                );
                default
            }
        }
    }

    /// A comma list of model names (empty when unset), each checked like a `?model=` value.
    pub(crate) fn models(&mut self, name: &'static str) -> Vec<String> {
        let raw = self.string(name, "");
        let models: Vec<String> = raw
            .split(',')
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty())
            .collect();
        if let Some(bad) = models.iter().find(|m| !is_query_safe(m)) {
            self.invalid(
                name,
                &raw,
                format!("{bad:?} may contain only letters, digits, '-', '_', '.' and ':'"),
            );
        }
        models
    }

    pub(crate) fn millis(&mut self, name: &'static str, default_ms: u64) -> Duration {
        Duration::from_millis(self.number(name, default_ms, 1))
    }

    pub(crate) fn boolean(&mut self, name: &'static str, default: bool) -> bool {
        let Some(v) = self.raw(name) else {
            return default;
        };
        match v.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" => false,
            _ => {
                self.invalid(name, &v, "must be true or false");
                default
            }
        }
    }

    /// One of `choices` (`(value, meaning)`), compared exactly; anything else is reported with
    /// `problem` and read as the first choice.
    pub(crate) fn choice<T: Copy>(
        &mut self,
        name: &'static str,
        default: &str,
        choices: &[(&str, T)],
        problem: &str,
    ) -> T {
        let value = self.string(name, default);
        match choices.iter().find(|(v, _)| *v == value) {
            Some((_, meaning)) => *meaning,
            None => {
                self.invalid(name, &value, problem);
                choices[0].1
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::parse;

    /// PORT and ADMIN_PORT name their range when out of it; 65535 itself is fine.
    #[test]
    fn ports_out_of_range_say_the_range() {
        for bad in ["99999", "65536", "-1", "eighty"] {
            let err = parse(&[("OPENAI_API_KEY", "k"), ("PORT", bad)]).unwrap_err();
            assert!(
                err.to_string().contains("between 1 and 65535"),
                "PORT={bad}: {err}"
            );
            let err = parse(&[("OPENAI_API_KEY", "k"), ("ADMIN_PORT", bad)]).unwrap_err();
            assert!(err
                .to_string()
                .contains("ADMIN_PORT: must be a port number between 1 and 65535"));
        }
        assert_eq!(
            parse(&[("OPENAI_API_KEY", "k"), ("PORT", "65535")])
                .expect("valid")
                .port,
            65535
        );
    }

    /// A number past its type's range is called too large, not malformed.
    #[test]
    fn numbers_too_large_are_not_called_malformed() {
        let err = parse(&[
            ("OPENAI_API_KEY", "k"),
            ("MAX_CONNECTIONS", "99999999999999999999999"),
        ])
        .unwrap_err();
        assert!(
            err.to_string().contains("MAX_CONNECTIONS: is too large"),
            "{err}"
        );
    }
}
