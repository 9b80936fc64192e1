//! The command line: `--name value` options and `--flag` flags, the loopback check every URL
//! passes, and `Failure`, the two ways a subcommand fails (bad usage, exit 64; a failed run).

use std::collections::HashMap;

#[derive(Debug)]
pub(crate) enum Failure {
    /// Bad command line (exit 64).
    Usage(String),
    /// The run itself failed.
    Run(String),
}

/// `--name value` options and `--flag` flags, by name without the dashes.
pub(crate) struct Args(HashMap<String, String>);

impl Args {
    pub(crate) fn parse(
        args: &[String],
        options: &[&str],
        flags: &[&str],
    ) -> Result<Args, Failure> {
        let mut map = HashMap::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let Some(name) = arg.strip_prefix("--") else {
                return Err(Failure::Usage(format!("unexpected argument {arg:?}")));
            };
            if flags.contains(&name) {
                map.insert(name.to_owned(), String::new());
            } else if options.contains(&name) {
                let value = it
                    .next()
                    .ok_or_else(|| Failure::Usage(format!("--{name} needs a value")))?;
                map.insert(name.to_owned(), value.clone());
            } else {
                return Err(Failure::Usage(format!("unknown option {arg:?}")));
            }
        }
        Ok(Args(map))
    }

    pub(crate) fn flag(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    pub(crate) fn str(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub(crate) fn num<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, Failure> {
        match self.0.get(name) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| Failure::Usage(format!("--{name}: {v:?} is not a number"))),
        }
    }

    pub(crate) fn required<T: std::str::FromStr>(&self, name: &str) -> Result<T, Failure> {
        self.num(name)?
            .ok_or_else(|| Failure::Usage(format!("--{name} is required")))
    }
}

/// Refuses any WebSocket URL that would leave the machine.
pub(crate) fn loopback_url(url: &str) -> Result<String, Failure> {
    loopback(url, "ws")
}

/// Refuses any HTTP URL (the admin endpoints) that would leave the machine.
pub(crate) fn loopback_http(url: &str) -> Result<String, Failure> {
    loopback(url, "http")
}

fn loopback(url: &str, scheme: &str) -> Result<String, Failure> {
    let uri: awc::http::Uri = url
        .parse()
        .map_err(|_| Failure::Usage(format!("{url:?} is not a URL")))?;
    if uri.scheme_str() != Some(scheme) {
        return Err(Failure::Usage(format!(
            "{url:?}: only {scheme}:// URLs are supported here"
        )));
    }
    match uri.host() {
        Some("127.0.0.1" | "localhost" | "[::1]" | "::1") => Ok(url.to_owned()),
        other => Err(Failure::Usage(format!(
            "{url:?}: host {other:?} is not loopback; relay-bench only talks to 127.0.0.1, localhost or ::1"
        ))),
    }
}

/// `http://host:port` of a loopback `ws://` URL: where its relay answers `/stats`.
pub(crate) fn http_base(ws_url: &str) -> Result<String, Failure> {
    let uri: awc::http::Uri = loopback_url(ws_url)?
        .parse()
        .map_err(|_| Failure::Usage(format!("{ws_url:?} is not a URL")))?;
    let authority = uri
        .authority()
        .ok_or_else(|| Failure::Usage(format!("{ws_url:?} has no host")))?;
    Ok(format!("http://{authority}"))
}

pub(crate) fn parse_pids(list: Option<&str>) -> Result<Vec<u32>, Failure> {
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    list.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            p.trim()
                .parse()
                .map_err(|_| Failure::Usage(format!("--pids: {p:?} is not a process id")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only loopback hosts are accepted.
    #[test]
    fn loopback_only() {
        assert!(loopback_url("ws://127.0.0.1:1/v1/realtime?model=x").is_ok());
        assert!(loopback_url("ws://localhost:1/realtime").is_ok());
        assert!(loopback_url("ws://[::1]:1/realtime").is_ok());
        assert!(loopback_url("ws://10.0.0.1:1/realtime").is_err());
        assert!(loopback_url("wss://api.openai.com/v1/realtime").is_err());
        assert!(loopback_url("http://127.0.0.1:1/stats").is_err());
        assert!(loopback_http("http://127.0.0.1:1").is_ok());
        assert!(loopback_http("http://192.168.1.1:1").is_err());
        assert!(loopback_http("ws://127.0.0.1:1").is_err());
    }

    /// The admin base of a relay URL keeps its host and port and drops path and query.
    #[test]
    fn admin_base_from_the_websocket_url() {
        assert_eq!(
            http_base("ws://127.0.0.1:8080/v1/realtime?model=x").ok(),
            Some("http://127.0.0.1:8080".to_owned())
        );
        assert_eq!(
            http_base("ws://[::1]:9/realtime").ok(),
            Some("http://[::1]:9".to_owned())
        );
        assert!(http_base("ws://10.0.0.1:9/realtime").is_err());
    }
}
