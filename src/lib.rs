//! Switchboard: a GraphQL API server that connects a product's workspaces to remote MCP
//! servers.
//!
//! Layers, from the edge inwards: [`graphql`] and [`http`] authenticate, parse and call one
//! [`domain`] function; [`domain`] owns every rule and is written against [`db`] (the only
//! place that knows SQL), [`net`] (the only place that opens outbound connections) and
//! [`crypto`] (the only place that sees plaintext secrets on their way to storage). Nothing in
//! `db`, `net` or `crypto` depends on `domain`.

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
