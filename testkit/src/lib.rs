//! The network peers Switchboard is tested and benchmarked against, as real HTTP servers on
//! 127.0.0.1: an OAuth authorization server ([`fake_as`]), a remote MCP server ([`fake_mcp`]),
//! an OpenID provider whose tokens sign users in ([`fake_oidc`]) and the browser of the OAuth
//! popup ([`popup`]), on shared plumbing ([`fake_http`]), with
//! signing keys for the authorization server's `private_key_jwt` clients ([`jws`]).
//!
//! The server's unit tests, its integration tests and the benchmark harness all run against
//! these same peers. The kit does not depend on `switchboard`, so the server's own unit tests
//! can use it without a dependency cycle, and it is not rebuilt when the server changes.
//!
//! Every fake records what it receives, so a test can assert on what went over the wire, and
//! has switches that make it behave like the variety of real servers, hostile ones included.
//! Setup failures (a port that cannot be bound, a poisoned lock) panic: this is test code, and
//! a panic is how it fails the test that uses it.

pub mod fake_as;
pub mod fake_http;
pub mod fake_mcp;
pub mod fake_oidc;
pub mod jws;
pub mod popup;
