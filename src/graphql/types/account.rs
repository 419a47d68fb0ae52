//! Users and their API tokens.

use async_graphql::{ID, Object};
use chrono::{DateTime, Utc};

use crate::db::models::{ApiTokenRow, UserRow};

/// A user.
pub struct User(pub UserRow);

#[Object]
impl User {
    async fn id(&self) -> ID {
        ID(self.0.id.0.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
}

/// An API token; the token itself is shown only once, at creation.
pub struct ApiToken(pub ApiTokenRow);

#[Object]
impl ApiToken {
    async fn id(&self) -> ID {
        ID(self.0.id.0.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The first characters of the token, to recognise it.
    async fn prefix(&self) -> &str {
        &self.0.prefix
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at.0
    }
    async fn last_used_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_used_at.map(|t| t.0)
    }
    async fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.0.revoked_at.map(|t| t.0)
    }
}
