//! `CONSOLE`: whether the relay serves its browser console (`GET /console`, `src/http/console.rs`).
//! On by default in demo mode and whenever `NODE_ENV` is not `production`; `CONSOLE=true|false`
//! overrides either way. Read by `Config::from_source`; used by `relay::start` when it builds the
//! routes.

use super::{source::Reader, KeyPolicy};

/// `CONSOLE`, defaulting to on in demo mode or outside production.
pub(super) fn read(r: &mut Reader<'_>, keys: KeyPolicy, production: bool) -> bool {
    r.boolean("CONSOLE", keys == KeyPolicy::Demo || !production)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use crate::config::{Config, KeyPolicy};

    fn console(vars: &[(&str, &str)], keys: KeyPolicy) -> bool {
        let mut map: HashMap<&str, &str> = vars.iter().copied().collect();
        map.insert("OPENAI_API_KEY", "k");
        Config::from_source(&map, keys).expect("valid").console
    }

    /// On outside production and in demo mode (even in production), off in production.
    #[test]
    fn on_outside_production_and_in_demo_mode_off_in_production() {
        assert!(console(&[], KeyPolicy::Required));
        assert!(!console(&[("NODE_ENV", "production")], KeyPolicy::Required));
        assert!(console(&[("NODE_ENV", "production")], KeyPolicy::Demo));
    }

    /// CONSOLE overrides the default either way; a value that is not a boolean is an error.
    #[test]
    fn the_variable_overrides_the_default_either_way() {
        let prod = ("NODE_ENV", "production");
        assert!(console(&[prod, ("CONSOLE", "true")], KeyPolicy::Required));
        assert!(!console(&[("CONSOLE", "false")], KeyPolicy::Required));
        assert!(!console(&[prod, ("CONSOLE", "off")], KeyPolicy::Demo));
        let mut map: HashMap<&str, &str> = HashMap::new();
        map.insert("OPENAI_API_KEY", "k");
        map.insert("CONSOLE", "maybe");
        let err = Config::from_source(&map, KeyPolicy::Required).unwrap_err();
        assert!(err.to_string().contains("CONSOLE"), "{err}");
    }
}
