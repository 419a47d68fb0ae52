//! Switchboard's integration tests, compiled as one binary so the suite links once.
//!
//! Each module covers one area through the public surface: GraphQL over HTTP and WebSocket,
//! GraphiQL, the OAuth pages, the binary as an operator runs it, and the storage on the
//! configured backend (SQLite by default, PostgreSQL when `SWITCHBOARD_TEST_DATABASE_URL` is
//! set). `layers` reads the sources instead: it checks that the layers depend only downwards.
//! `support` holds the in-process `TestApp` and re-exports the fake authorization and MCP
//! servers of `switchboard-testkit` (whose own tests check the fakes themselves).

mod support;

mod access;
mod api_hygiene;
mod audit_retention;
mod binary;
mod cli;
mod console;
mod console_identity;
mod domain_rules;
mod faults;
mod grants;
mod graphiql;
mod health;
mod hostile_servers;
mod hostile_users;
mod identity;
mod layers;
mod limits;
mod machine;
mod metrics;
mod modern;
mod oauth;
mod onboarding;
mod outbound;
mod replicas;
mod servers;
mod sse;
mod status;
mod storage;
mod subscriptions;
mod tools;
mod tracing_export;

mod websocket;
