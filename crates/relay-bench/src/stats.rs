//! Percentiles, number formatting and the printing shared by every report: samples are kept as
//! microseconds (`u32`), percentiles are nearest-rank and printed in milliseconds.

use std::time::Duration;

use serde_json::{json, Value};

/// Prints a report: its table on stdout, or with `--json` the JSON on stdout and the table on
/// stderr.
pub(crate) fn print_report(table: &str, out: &Value, as_json: bool) {
    if as_json {
        eprint!("{table}");
        println!("{out}");
    } else {
        print!("{table}");
    }
}

/// A duration as whole microseconds, saturating at `u32::MAX` (71 minutes).
pub(crate) fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// Nearest-rank percentile of sorted micros, in milliseconds.
pub(crate) fn pct_ms(sorted: &[u32], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0)
}

/// Three decimals, for JSON.
pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A rounded number, or `null`.
pub(crate) fn opt(x: Option<f64>) -> Value {
    x.map_or(Value::Null, |v| json!(round3(v)))
}

/// Milliseconds with three decimals, or `-`.
pub(crate) fn fmt_ms(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nearest-rank percentiles.
    #[test]
    fn percentiles() {
        let v: Vec<u32> = (1..=100).map(|x| x * 1000).collect();
        assert_eq!(pct_ms(&v, 50.0), Some(50.0));
        assert_eq!(pct_ms(&v, 99.0), Some(99.0));
        assert_eq!(pct_ms(&v, 100.0), Some(100.0));
        assert_eq!(pct_ms(&[], 50.0), None);
    }
}
