//! Usage in upstream events: which server events the relay looks at ([`watched`], a look at the
//! first bytes only, on every upstream text frame; `watch.rs`) and the token counts of the few
//! that carry them ([`parse_usage`], a full parse, which drops counts no event can carry;
//! `parse.rs`). Called by the upstream→client pump; the session's event log uses
//! [`top_level_type`].

mod parse;
mod watch;

pub(crate) use self::{
    parse::parse_usage,
    watch::{top_level_type, watched, Watched},
};
