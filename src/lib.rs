//! Switchboard: a GraphQL API server that connects a product's workspaces to remote MCP
//! servers.
//!
//! Layers, from the edge inwards; each depends only on those below it:
//! - [`graphql`] and [`http`] authenticate, parse, call one [`domain`] function and map the
//!   result. They see the [`App`] built by [`app`]; they run no SQL (they name row types of
//!   [`db::models`] at most) and open no outbound connection. [`cli`] and [`headless`] are
//!   the other entry points at this level.
//! - [`domain`] owns every rule. Its functions receive a [`domain::Context`] (or the one part
//!   of it they need): the handles and the settings it reads, which [`app`] assembles from the
//!   [`config`]. It never sees `App`, the configuration, axum or async-graphql.
//! - Infrastructure, which knows nothing of the domain: [`db`] (the only place that knows
//!   SQL), [`net`] (the only place that opens outbound connections), [`crypto`] (the only
//!   place that sees plaintext secrets on their way to storage), [`mcp`] (MCP client sessions
//!   and transports, on `net`'s guarded client), [`events`] (the event bus and its relay
//!   between replicas, generic over its payloads), [`supervisor`] (background tasks) and
//!   [`metrics`].
//!
//! `tests/layers.rs` reads the sources and fails when a path points upwards.

#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod app;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod db;
pub mod domain;
pub mod events;
pub mod graphql;
pub mod headless;
pub mod http;
pub mod mcp;
pub mod metrics;
pub mod net;
#[cfg(test)]
mod proptests;
pub mod supervisor;
pub mod telemetry;

pub use app::{App, AppHandle};
