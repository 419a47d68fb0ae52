//! The fake upstreams of the integration tests, compiled into the harness as they are: an
//! OAuth authorization server and a remote MCP server, both real HTTP servers on 127.0.0.1
//! that record what they receive. The paths point into `tests/support/`, so the benchmark
//! and the tests always exercise Switchboard against the same peers.

#[path = "../../tests/support/fake_as.rs"]
pub mod fake_as;
#[path = "../../tests/support/fake_http.rs"]
pub mod fake_http;
#[path = "../../tests/support/fake_mcp.rs"]
pub mod fake_mcp;
