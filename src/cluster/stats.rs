//! `GET /stats?scope=cluster`: live sessions per instance and per identity, and today's usage,
//! read from Redis in one script (`cluster_stats.lua`). Called by the admin endpoint.

use std::collections::{BTreeMap, HashMap};

use redis::Value;
use serde_json::{json, Value as Json};

use super::{usage::from_hash, Cluster, Lease, Op, Unanswered};
use crate::protection::usage::Shown;

/// How many identities the answer lists (the busiest first).
const TOP: usize = 100;

impl Cluster {
    /// The cluster-wide view, as JSON.
    pub(crate) async fn stats(&self) -> Result<Json, Unanswered> {
        let mut conn = self.conn.clone();
        let mut call = self.scripts.stats.prepare_invoke();
        call.arg(&*self.prefix).arg(TOP);
        let answer: Value = self
            .run(
                Op::Stats,
                async move { Ok(call.invoke_async(&mut conn).await?) },
            )
            .await?;
        let Value::Array(parts) = answer else {
            return Err(Unanswered::Shape("not an array".into()));
        };
        let shape = || Unanswered::Shape("cluster stats".into());
        let [day, now, leases, instances, all, models, top, count] = &parts[..] else {
            return Err(shape());
        };
        let (day, now) = (int(day).ok_or_else(shape)?, int(now).ok_or_else(shape)?);

        let mut per_instance: BTreeMap<String, u64> = BTreeMap::new();
        let mut per_identity: HashMap<String, u64> = HashMap::new();
        let lease_members = strings(leases);
        for member in &lease_members {
            if let Some((instance, identity)) = Lease::parse(member) {
                *per_instance.entry(instance.to_string()).or_default() += 1;
                *per_identity.entry(identity.to_string()).or_default() += 1;
            }
        }
        let mut instance_list: Vec<Json> = pairs(instances)
            .into_iter()
            .map(|(instance, seen)| {
                let live = per_instance.remove(&instance).unwrap_or(0);
                json!({
                    "instance": instance,
                    "live_sessions": live,
                    "last_refresh_seconds_ago": now.saturating_sub(seen) / 1000,
                })
            })
            .collect();
        // Leases of an instance that has not refreshed yet (it started a moment ago).
        for (instance, live) in per_instance {
            instance_list.push(json!({"instance": instance, "live_sessions": live}));
        }
        let mut by_identity: Vec<(String, u64)> = per_identity.into_iter().collect();
        by_identity.sort_by(|a, b| (b.1, &a.0).cmp(&(a.1, &b.0)));
        let identities_live = by_identity.len();
        by_identity.truncate(TOP);

        let mut by_model = BTreeMap::new();
        if let Value::Array(models) = models {
            for m in models {
                if let Value::Array(pair) = m {
                    if let [name, hash] = &pair[..] {
                        if let Some(name) = string(name) {
                            by_model.insert(name, Shown::from(from_hash(&pairs(hash))));
                        }
                    }
                }
            }
        }
        let top_identities: Vec<Json> = pairs(top)
            .into_iter()
            .map(|(identity, billable)| json!({"identity": identity, "billable_tokens": billable}))
            .collect();
        Ok(json!({
            "scope": "cluster",
            "this_instance": self.instance(),
            "live_sessions": lease_members.len(),
            "instances": instance_list,
            "live_by_identity": by_identity
                .into_iter()
                .map(|(identity, n)| json!({"identity": identity, "live_sessions": n}))
                .collect::<Vec<_>>(),
            "identities_live": identities_live,
            "usage": {
                "utc_day": day,
                "today": Shown::from(from_hash(&pairs(all))),
                "by_model": by_model,
                "by_identity": top_identities,
                "identities_today": int(count).unwrap_or(0),
            },
        }))
    }
}

fn string(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        // Scores and HSET values come back as strings, sometimes with a fraction.
        other => string(other)?
            .parse::<f64>()
            .ok()
            .map(|f| f.max(0.0) as u64),
    }
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.iter().filter_map(string).collect(),
        _ => Vec::new(),
    }
}

/// `[name, value, name, value, ...]` as pairs with whole-number values.
fn pairs(v: &Value) -> Vec<(String, u64)> {
    let items = strings(v);
    items
        .chunks_exact(2)
        .map(|c| {
            (
                c[0].clone(),
                c[1].parse::<f64>().map_or(0, |f| f.max(0.0) as u64),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flat name/value arrays read as pairs; numbers written as strings or fractions are read.
    #[test]
    fn pairs_read_flat_arrays() {
        let v = Value::Array(vec![
            Value::BulkString(b"a".to_vec()),
            Value::BulkString(b"12".to_vec()),
            Value::BulkString(b"b".to_vec()),
            Value::BulkString(b"3.5".to_vec()),
        ]);
        assert_eq!(pairs(&v), vec![("a".into(), 12), ("b".into(), 3)]);
        assert_eq!(int(&Value::Int(4)), Some(4));
        assert_eq!(int(&Value::BulkString(b"7".to_vec())), Some(7));
    }
}
