//! The cost settings: `PRICING_FILE` (the price table that replaces the built-in
//! `config/pricing.toml`), `DAILY_USD_BUDGET` and `CLIENT_DAILY_USD_BUDGET` (UTC-day budgets in
//! dollars, beside the token budgets). The price file is parsed now, so a bad one stops the
//! relay before it binds. Read by `Config::from_source`; used by `relay::start` (the price table
//! the pumps price usage with, the registry's budgets).

use std::path::PathBuf;

use super::source::{ConfigError, Reader};
use crate::protection::{pricing::Pricing, usage::usd_to_nano};

/// What usage costs and how much of it a day may cost.
#[derive(Debug, Clone, Default)]
pub struct Cost {
    /// `PRICING_FILE`: None = the built-in table.
    pub pricing_file: Option<PathBuf>,
    /// `DAILY_USD_BUDGET`, in billionths of a dollar; None = no budget.
    pub daily_usd_budget: Option<u64>,
    /// `CLIENT_DAILY_USD_BUDGET`, in billionths of a dollar, per identity; a client's own
    /// budget (tokens file, JWT `budget_usd`) replaces it for that client.
    pub client_daily_usd_budget: Option<u64>,
}

impl Cost {
    pub(super) fn read(r: &mut Reader<'_>) -> Cost {
        let pricing_file = r.raw("PRICING_FILE").map(PathBuf::from);
        if let Some(path) = &pricing_file {
            if let Err(problem) = Pricing::load(path) {
                r.push(ConfigError::Unreadable {
                    name: "PRICING_FILE",
                    path: path.display().to_string(),
                    problem,
                });
            }
        }
        Cost {
            pricing_file,
            daily_usd_budget: usd_budget(r, "DAILY_USD_BUDGET"),
            client_daily_usd_budget: usd_budget(r, "CLIENT_DAILY_USD_BUDGET"),
        }
    }
}

/// A budget in dollars (`50`, `2.5`), as billionths; 0 or unset = none.
fn usd_budget(r: &mut Reader<'_>, name: &'static str) -> Option<u64> {
    let value = r.raw(name)?;
    match value.trim().parse::<f64>().ok().and_then(usd_to_nano) {
        Some(nano) => (nano > 0).then_some(nano),
        None => {
            r.invalid(
                name,
                &value,
                "must be an amount in US dollars, such as 50 or 2.50 (0 = none)",
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::parse;

    /// Budgets in dollars become exact billionths; 0 is none; a bad amount or price file is
    /// reported by name.
    #[test]
    fn usd_budgets_and_price_file() {
        let c = parse(&[
            ("OPENAI_API_KEY", "k"),
            ("DAILY_USD_BUDGET", "50"),
            ("CLIENT_DAILY_USD_BUDGET", "0.01"),
        ])
        .expect("valid")
        .cost;
        assert_eq!(c.daily_usd_budget, Some(50_000_000_000));
        assert_eq!(c.client_daily_usd_budget, Some(10_000_000));
        assert!(c.pricing_file.is_none());
        let none = parse(&[("OPENAI_API_KEY", "k"), ("DAILY_USD_BUDGET", "0")]).expect("valid");
        assert_eq!(none.cost.daily_usd_budget, None);
        let err = parse(&[
            ("OPENAI_API_KEY", "k"),
            ("DAILY_USD_BUDGET", "$5"),
            ("CLIENT_DAILY_USD_BUDGET", "-1"),
            ("PRICING_FILE", "/nonexistent/pricing.toml"),
        ])
        .unwrap_err();
        assert_eq!(err.0.len(), 3, "{err}");
        assert!(err.to_string().contains("PRICING_FILE"), "{err}");
    }
}
