//! The shared usage ledger: each upstream usage report is added to today's totals in Redis by
//! `usage.lua`, at most once per key (the response id), so a report sent again after a timeout
//! is not counted twice; `totals.lua` reads today's billable totals back, which is how an
//! instance learns that a budget was spent through another one. Reports Redis did not take wait
//! in a [`Backlog`] and are sent again when it answers: nothing counted is lost. Called by the
//! registry.

use std::collections::{HashMap, VecDeque};

use super::{Cluster, Op, Unanswered};
use crate::protection::usage::{Spent, Usage};

/// One usage report on its way to Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingUsage {
    pub(crate) identity: String,
    pub(crate) model: String,
    pub(crate) usage: Usage,
    pub(crate) key: Option<String>,
}

/// Today's billable tokens and cost, as Redis has them after a report (or a check).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) day: u64,
    pub(crate) all: Spent,
    /// Per identity asked about.
    pub(crate) by_identity: HashMap<String, Spent>,
}

/// The fields of [`Usage`] as they are stored in Redis hashes.
pub(crate) fn fields(u: &Usage) -> [(&'static str, u64); 14] {
    [
        ("input_tokens", u.input_tokens),
        ("output_tokens", u.output_tokens),
        ("total_tokens", u.total_tokens),
        ("input_text", u.input_text),
        ("input_audio", u.input_audio),
        ("input_image", u.input_image),
        ("input_cached", u.input_cached),
        ("input_cached_text", u.input_cached_text),
        ("input_cached_audio", u.input_cached_audio),
        ("output_text", u.output_text),
        ("output_audio", u.output_audio),
        ("audio_millis", u.audio_millis),
        ("cost_nano_usd", u.cost_nano_usd),
        ("unpriced", u.unpriced),
    ]
}

/// A [`Usage`] read back from a Redis hash (`name, value, ...`); unknown names are skipped.
pub(crate) fn from_hash(pairs: &[(String, u64)]) -> Usage {
    let mut u = Usage::default();
    for (name, value) in pairs {
        let field = match name.as_str() {
            "input_tokens" => &mut u.input_tokens,
            "output_tokens" => &mut u.output_tokens,
            "total_tokens" => &mut u.total_tokens,
            "input_text" => &mut u.input_text,
            "input_audio" => &mut u.input_audio,
            "input_image" => &mut u.input_image,
            "input_cached" => &mut u.input_cached,
            "input_cached_text" => &mut u.input_cached_text,
            "input_cached_audio" => &mut u.input_cached_audio,
            "output_text" => &mut u.output_text,
            "output_audio" => &mut u.output_audio,
            "audio_millis" => &mut u.audio_millis,
            "cost_nano_usd" => &mut u.cost_nano_usd,
            "unpriced" => &mut u.unpriced,
            _ => continue,
        };
        *field = *value;
    }
    u
}

impl Cluster {
    /// Adds one report to today's shared ledger (once per key) and answers today's totals for
    /// all clients and for the report's identity.
    pub(crate) async fn record(&self, report: &PendingUsage) -> Result<Totals, Unanswered> {
        let mut conn = self.conn.clone();
        let mut call = self.scripts.usage.prepare_invoke();
        call.arg(&*self.prefix)
            .arg(&report.identity)
            .arg(&report.model)
            .arg(report.key.as_deref().unwrap_or(""))
            .arg(report.usage.billable());
        for (name, value) in fields(&report.usage) {
            call.arg(name).arg(value);
        }
        let answer: Vec<u64> = self
            .run(
                Op::Usage,
                async move { Ok(call.invoke_async(&mut conn).await?) },
            )
            .await?;
        match answer[..] {
            [_, day, all, mine, all_cost, my_cost] => Ok(Totals {
                day,
                all: spent(all, all_cost),
                by_identity: HashMap::from([(report.identity.clone(), spent(mine, my_cost))]),
            }),
            _ => Err(Unanswered::Shape(format!("{answer:?}"))),
        }
    }

    /// Today's billable tokens and cost for all clients and for each of `identities`.
    pub(crate) async fn totals(&self, identities: Vec<String>) -> Result<Totals, Unanswered> {
        let mut conn = self.conn.clone();
        let mut call = self.scripts.totals.prepare_invoke();
        call.arg(&*self.prefix);
        for identity in &identities {
            call.arg(identity);
        }
        let answer: Vec<u64> = self
            .run(Op::Totals, async move {
                Ok(call.invoke_async(&mut conn).await?)
            })
            .await?;
        if answer.len() != 2 * identities.len() + 3 {
            return Err(Unanswered::Shape(format!("{} values", answer.len())));
        }
        Ok(Totals {
            day: answer[0],
            all: spent(answer[1], answer[2]),
            by_identity: identities
                .into_iter()
                .zip(answer[3..].chunks_exact(2).map(|c| spent(c[0], c[1])))
                .collect(),
        })
    }
}

fn spent(tokens: u64, nano_usd: u64) -> Spent {
    Spent { tokens, nano_usd }
}

/// Reports that Redis has not taken yet, oldest first. Bounded: past [`Backlog::MAX_KEYED`]
/// reports, new ones are summed per identity and model (their keys dropped: a retry of those
/// could count twice, but nothing is lost).
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    keyed: VecDeque<PendingUsage>,
    summed: HashMap<(String, String), Usage>,
}

impl Backlog {
    pub(crate) const MAX_KEYED: usize = 100_000;

    pub(crate) fn push(&mut self, report: PendingUsage) {
        if self.keyed.len() < Self::MAX_KEYED {
            self.keyed.push_back(report);
        } else {
            self.summed
                .entry((report.identity, report.model))
                .or_default()
                .add(&report.usage);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.keyed.len() + self.summed.len()
    }

    /// Takes everything waiting, oldest first.
    pub(crate) fn take(&mut self) -> Vec<PendingUsage> {
        let mut all: Vec<PendingUsage> = self.keyed.drain(..).collect();
        all.extend(
            self.summed
                .drain()
                .map(|((identity, model), usage)| PendingUsage {
                    identity,
                    model,
                    usage,
                    key: None,
                }),
        );
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(identity: &str, tokens: u64) -> PendingUsage {
        PendingUsage {
            identity: identity.into(),
            model: "m".into(),
            usage: Usage {
                total_tokens: tokens,
                ..Usage::default()
            },
            key: Some(format!("response:{identity}{tokens}")),
        }
    }

    /// Field names written to Redis read back into the same usage.
    #[test]
    fn fields_round_trip() {
        let u = Usage {
            input_tokens: 1,
            output_tokens: 2,
            total_tokens: 3,
            input_text: 4,
            input_audio: 5,
            input_image: 6,
            input_cached: 7,
            input_cached_text: 11,
            input_cached_audio: 12,
            output_text: 8,
            output_audio: 9,
            audio_millis: 10,
            cost_nano_usd: 13,
            unpriced: 14,
        };
        let pairs: Vec<(String, u64)> = fields(&u)
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .chain([("billable".to_string(), 3)])
            .collect();
        assert_eq!(from_hash(&pairs), u);
    }

    /// The backlog keeps reports in order, and past its bound sums them without losing a token.
    #[test]
    fn backlog_is_bounded_and_loses_nothing() {
        let mut b = Backlog::default();
        for i in 0..Backlog::MAX_KEYED + 10 {
            b.push(report(if i % 2 == 0 { "a" } else { "b" }, 1));
        }
        assert_eq!(b.len(), Backlog::MAX_KEYED + 2);
        let all = b.take();
        assert_eq!(b.len(), 0);
        let tokens: u64 = all.iter().map(|r| r.usage.total_tokens).sum();
        assert_eq!(tokens, (Backlog::MAX_KEYED + 10) as u64);
        assert!(all[..Backlog::MAX_KEYED].iter().all(|r| r.key.is_some()));
        assert!(all[Backlog::MAX_KEYED..].iter().all(|r| r.key.is_none()));
    }
}
