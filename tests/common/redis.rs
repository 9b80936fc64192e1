//! A real `redis-server` for one test: on a free loopback port, in a scratch directory of its
//! own, with no persistence unless asked, killed on drop (also when the test panics). A test can
//! kill it and start it again on the same port (an outage), or pause it with SIGSTOP (a Redis
//! that hangs), and read or write keys with redis-rs (the relay's own client) over a fresh
//! connection, every call bounded by [`T`].
//!
//! Missing `redis-server` skips the test (see [`tool`]) unless `RELAY_TESTS_REQUIRE` lists it.

use std::{
    cell::RefCell,
    path::PathBuf,
    process::{Command, Stdio},
};

use super::{
    poll::poll,
    tools::{free_port, tool, Killed, TempDir},
    T,
};

/// A running `redis-server` (or one a test stopped, to start again on the same port).
pub struct RedisServer {
    program: PathBuf,
    port: u16,
    options: Options,
    /// Its working directory: the log, and the append-only file when persistent.
    dir: TempDir,
    child: Option<Killed>,
}

/// How a server is started.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--requirepass`.
    pub password: Option<String>,
    /// An append-only file fsync'd on every write: the keys survive a kill.
    pub persistent: bool,
    /// Every command into the slow log (`SLOWLOG GET`), with its arguments.
    pub log_commands: bool,
}

impl RedisServer {
    /// A server with no password and no persistence; `None` when `redis-server` is missing.
    pub async fn start(name: &str) -> Option<RedisServer> {
        RedisServer::start_with(name, Options::default()).await
    }

    /// A server started with `options`; `None` when `redis-server` is missing.
    pub async fn start_with(name: &str, options: Options) -> Option<RedisServer> {
        let program = tool("redis-server")?;
        let mut server = RedisServer {
            program,
            port: 0,
            options,
            dir: TempDir::new(&format!("redis-{name}")),
            child: None,
        };
        // A port that was free a moment ago may be taken by the time Redis binds it: another.
        for _ in 0..3 {
            server.port = free_port();
            if server.launch().await {
                return Some(server);
            }
        }
        panic!(
            "redis-server did not start on three free ports: {}",
            server.log()
        );
    }

    fn args(&self) -> Vec<String> {
        let options = &self.options;
        let mut args: Vec<String> = [
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            if options.persistent { "yes" } else { "no" },
            "--appendfsync",
            "always",
            "--daemonize",
            "no",
            "--logfile",
            "redis.log",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(password) = &options.password {
            args.extend(["--requirepass".to_string(), password.clone()]);
        }
        if options.log_commands {
            args.extend(
                [
                    "--slowlog-log-slower-than",
                    "0",
                    "--slowlog-max-len",
                    "4096",
                ]
                .map(String::from),
            );
        }
        args
    }

    /// Starts the process on `self.port`; true once it answers PING, false if it exited first.
    async fn launch(&mut self) -> bool {
        let child = Command::new(&self.program)
            .args(self.args())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.program.display()));
        let child = RefCell::new(Killed(child));
        let (child_ref, this) = (&child, &*self);
        let ready = poll(format!("redis-server answering PING on port {}", self.port))
            .until(|| {
                // Exited (the port was taken, say): no use waiting for an answer.
                let exited = child_ref.borrow_mut().0.try_wait().ok().flatten();
                async move {
                    if exited.is_some() {
                        return Ok(false);
                    }
                    match this.try_query::<String>(&redis::cmd("PING")).await {
                        Ok(pong) if pong == "PONG" => Ok(true),
                        other => Err(format!("{other:?}")),
                    }
                }
            })
            .await;
        if ready {
            self.child = Some(child.into_inner());
        }
        ready
    }

    /// `redis://[:password@]127.0.0.1:PORT`
    pub fn url(&self) -> String {
        match &self.options.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// What redis-server wrote to its log file.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// Kills the server (SIGKILL: no goodbye to its clients) and waits for it to exit.
    pub fn kill(&mut self) {
        self.child = None;
    }

    /// Starts the server again on the same port and waits until it answers.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "restart of a running redis-server");
        assert!(
            self.launch().await,
            "redis-server did not start again on port {}: {}",
            self.port,
            self.log()
        );
    }

    /// SIGSTOP: the server keeps its connections open and answers nothing (a hung Redis).
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// SIGCONT after [`RedisServer::pause`]: it reads what was sent meanwhile and answers.
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, signal: &str) {
        let Some(Killed(child)) = &self.child else {
            panic!("SIG{signal} to a redis-server that is not running");
        };
        let status = Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill -{signal}: {status:?}");
    }

    /// Runs `cmd` on a fresh connection; an error (or no answer within [`T`]) is returned.
    pub async fn try_query<V: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<V, String> {
        let client = redis::Client::open(self.url()).map_err(|e| e.to_string())?;
        let call = async {
            let mut conn = client
                .get_multiplexed_async_connection()
                .await
                .map_err(|e| e.to_string())?;
            cmd.query_async::<V>(&mut conn)
                .await
                .map_err(|e| e.to_string())
        };
        tokio::time::timeout(T, call)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {T:?}")))
    }

    /// Runs `cmd` and returns its answer; panics on an error.
    pub async fn query<V: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> V {
        self.try_query(cmd)
            .await
            .unwrap_or_else(|e| panic!("redis command: {e}"))
    }

    /// Every key, sorted.
    pub async fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.query(redis::cmd("KEYS").arg("*")).await;
        keys.sort();
        keys
    }

    /// The commands the server ran, oldest first, each as its arguments (only with
    /// [`Options::log_commands`]; Redis keeps the first 32 arguments of each).
    pub async fn commands(&self) -> Vec<Vec<String>> {
        let entries: Vec<redis::Value> = self.query(redis::cmd("SLOWLOG").arg("GET").arg(-1)).await;
        let mut commands: Vec<Vec<String>> = entries
            .iter()
            .filter_map(|entry| match entry {
                redis::Value::Array(fields) => match fields.get(3) {
                    Some(redis::Value::Array(args)) => Some(
                        args.iter()
                            .map(|a| match a {
                                redis::Value::BulkString(b) => String::from_utf8_lossy(b).into(),
                                redis::Value::SimpleString(s) => s.clone(),
                                other => format!("{other:?}"),
                            })
                            .collect(),
                    ),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        // SLOWLOG GET lists the newest first.
        commands.reverse();
        commands
    }
}
