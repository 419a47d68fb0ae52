//! Talking to a running Switchboard the way its users do: GraphQL over HTTP with a bearer
//! token, the OAuth popup as a browser runs it, and `/metrics` scrapes.

use anyhow::{Context, bail};
use serde_json::{Value, json};
use switchboard_testkit::popup;

/// A GraphQL client of one server, as one user.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    /// A client for the server at `base` (`http://127.0.0.1:PORT`) with an API token.
    pub fn new(base: &str, token: &str) -> anyhow::Result<Api> {
        Ok(Api {
            http: reqwest::Client::builder().build()?,
            base: base.to_owned(),
            token: token.to_owned(),
        })
    }

    /// The same user on another server (a replica on the same database).
    pub fn at(&self, base: &str) -> Api {
        Api {
            http: self.http.clone(),
            base: base.to_owned(),
            token: self.token.clone(),
        }
    }

    /// The API token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Run an operation that must succeed; returns `data`.
    pub async fn ok(&self, query: &str, variables: Value) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(self.url("/graphql"))
            .bearer_auth(&self.token)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .context("sending a GraphQL request")?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .with_context(|| format!("GraphQL response ({status}) is not JSON"))?;
        if let Some(errors) = body.get("errors") {
            bail!("GraphQL errors ({status}): {errors}");
        }
        Ok(body["data"].clone())
    }

    /// The id of the caller's first workspace (the default one on a fresh database).
    pub async fn default_workspace(&self) -> anyhow::Result<String> {
        let data = self.ok("{ workspaces { id } }", json!({})).await?;
        data["workspaces"][0]["id"]
            .as_str()
            .map(str::to_owned)
            .context("the admin has no workspace")
    }

    /// Create a workspace the caller administers.
    pub async fn create_workspace(&self, name: &str) -> anyhow::Result<String> {
        let data = self
            .ok(
                "mutation($n: String!) { createWorkspace(name: $n) { id } }",
                json!({ "n": name }),
            )
            .await?;
        data["createWorkspace"]["id"]
            .as_str()
            .map(str::to_owned)
            .context("createWorkspace returned no id")
    }

    /// Register a server; returns its id.
    pub async fn create_server(&self, input: Value) -> anyhow::Result<String> {
        let data = self
            .ok(
                "mutation($i: CreateMcpServerInput!) { createMcpServer(input: $i) { server { id } } }",
                json!({ "i": input }),
            )
            .await?;
        data["createMcpServer"]["server"]["id"]
            .as_str()
            .map(str::to_owned)
            .context("createMcpServer returned no id")
    }

    /// Run the OAuth popup for a server as a browser would: start, follow Switchboard's begin
    /// link (keeping its binding cookie), let the fake authorization server approve, and load
    /// the callback page with the cookie. Fails unless the page reports success.
    pub async fn authorize(&self, server_id: &str) -> anyhow::Result<()> {
        let data = self
            .ok(
                "mutation($id: ID!) { startMcpOauth(serverId: $id) { status authorizationUrl } }",
                json!({ "id": server_id }),
            )
            .await?;
        let start = &data["startMcpOauth"];
        if start["status"] != "REDIRECT" {
            bail!("startMcpOauth did not ask for the browser: {start}");
        }
        let begin_url = start["authorizationUrl"]
            .as_str()
            .context("no authorizationUrl")?;
        let popup = popup::follow_begin_link(begin_url).await?;
        let page = popup::load_callback(&popup.callback_url, &popup.begin_cookie)
            .await?
            .page;
        if !page.contains(r#""ok":true"#) {
            let reason = page
                .split("<code>")
                .nth(1)
                .and_then(|rest| rest.split("</code>").next())
                .unwrap_or("unknown");
            bail!("the OAuth callback failed for server {server_id}: {reason}");
        }
        Ok(())
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let response = self.http.get(self.url("/metrics")).send().await?;
        if !response.status().is_success() {
            bail!("/metrics answered {}", response.status());
        }
        Ok(response.text().await?)
    }

    /// One series of `/metrics`, e.g. `switchboard_db_statements_total`.
    pub async fn metric(&self, series: &str) -> anyhow::Result<f64> {
        let text = self.metrics().await?;
        text.lines()
            .find_map(|line| {
                line.strip_prefix(series)
                    .filter(|rest| rest.starts_with(' '))
                    .and_then(|rest| rest.trim().parse().ok())
            })
            .with_context(|| format!("/metrics has no {series}"))
    }
}
