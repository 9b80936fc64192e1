//! The relay behind the real Nginx running `config/nginx.conf` (test ports, a certificate, and two
//! relay instances substituted on its `# test:` lines; `server` runs it): `wss://` through TLS
//! termination, the `realtime` subprotocol and the client's own address (`proxying`), heartbeats
//! against Nginx's read timeout (`heartbeats`), a drained instance while the other keeps serving
//! (`drain`), two instances sharing one budget through the real Redis (`shared_budget`), and the
//! pair `config/self-signed-cert.sh` makes for a first try (`certificate`).
//!
//! Needs `nginx` (Debian's package) and `openssl`, and `redis-server` for `shared_budget`: without
//! them each test says it is skipped, unless `RELAY_TESTS_REQUIRE` lists them; `bash tests/run.sh`
//! installs them.

#[path = "../common/mod.rs"]
mod common;

mod certificate;
mod drain;
mod heartbeats;
mod proxying;
mod server;
mod shared_budget;
