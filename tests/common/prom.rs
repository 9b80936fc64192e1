//! Prometheus text exposition, as `/metrics` serves it: the one parser every test that reads a
//! sample uses. A series is named the way PromQL names it, `name` or `name{label="value",...}`,
//! and matches a sample with exactly that name and those labels, in any order.

use std::collections::BTreeMap;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Every sample in `text`, in order; `#` and blank lines skipped. Panics on a line that is not
/// a sample: the relay must never write one.
pub fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| parse_sample(l).unwrap_or_else(|| panic!("not a Prometheus sample: {l:?}")))
        .collect()
}

/// The value of `series` in `text`, if it has that sample.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    let (name, labels) = parse_series(series).unwrap_or_else(|| panic!("not a series: {series:?}"));
    samples(text)
        .into_iter()
        .find(|s| s.name == name && s.labels == labels)
        .map(|s| s.value)
}

/// Every family `text` declares with `# TYPE name kind`, as `(name, kind)`, in order.
pub fn families(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| {
            let mut parts = rest.split_whitespace();
            Some((parts.next()?.to_string(), parts.next()?.to_string()))
        })
        .collect()
}

/// The kind (`counter`, `gauge`, `histogram`...) `text` declares for `family`.
pub fn kind(text: &str, family: &str) -> Option<String> {
    families(text)
        .into_iter()
        .find(|(name, _)| name == family)
        .map(|(_, kind)| kind)
}

/// `name{labels} value [timestamp]`.
fn parse_sample(line: &str) -> Option<Sample> {
    let end = line.find([' ', '{']).unwrap_or(line.len());
    let (series, rest) = if line[end..].starts_with('{') {
        let close = closing_brace(line, end)?;
        line.split_at(close + 1)
    } else {
        line.split_at(end)
    };
    let (name, labels) = parse_series(series)?;
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// The byte index of the `}` that closes the label set opening at `open`, skipping quoted values.
fn closing_brace(line: &str, open: usize) -> Option<usize> {
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in line[open..].char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(open + i),
            _ => {}
        }
    }
    None
}

/// `name` or `name{label="value",...}` as a name and a label set.
fn parse_series(series: &str) -> Option<(String, BTreeMap<String, String>)> {
    let Some((name, set)) = series.split_once('{') else {
        return valid_name(series).then(|| (series.to_string(), BTreeMap::new()));
    };
    let mut set = set.strip_suffix('}')?.chars().peekable();
    let mut labels = BTreeMap::new();
    loop {
        let key: String = std::iter::from_fn(|| set.next_if(|c| *c != '=')).collect();
        let key = key.trim().trim_start_matches(',').trim().to_string();
        if key.is_empty() {
            break;
        }
        if set.next() != Some('=') || set.next() != Some('"') {
            return None;
        }
        let mut value = String::new();
        loop {
            match set.next()? {
                '"' => break,
                '\\' => match set.next()? {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                c => value.push(c),
            }
        }
        labels.insert(key, value);
    }
    valid_name(name).then(|| (name.to_string(), labels))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}
