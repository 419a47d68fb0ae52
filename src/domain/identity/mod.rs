//! Signing in with a product's own identities: bearer JWTs from trusted identity providers.
//!
//! A token that is not an API token is checked, when providers are configured, in this order:
//! size, shape and algorithm ([`jwt::parse`]); the providers whose issuer is the token's `iss`
//! (at most [`MAX_PROVIDERS_TRIED`]); the signature against the provider's keys ([`keys`]),
//! refreshing them once for an unknown key id; then the claims ([`jwt::check_claims`]). Any
//! failure is `Unauthenticated`, logged with its reason (never with the token), and nothing is
//! stored.
//!
//! The first valid token of a subject creates its user (issuer and subject stored, never the
//! token); the name comes from the provider's name claim or the subject, disambiguated
//! deterministically when another user has it. A sign-in is the first time a given token is
//! verified on this process: then, when the provider maps memberships, the user's memberships
//! are made to match the claim (see `workspaces::apply_granted_memberships`).
//!
//! Providers that name a console client are also offered to the built-in console, with their
//! public endpoints from OpenID discovery ([`console`]).

pub mod console;
pub mod jwt;
pub mod keys;
pub mod provider;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use self::console::{ConsoleProvider, EndpointCache};
use self::jwt::{Identity, JwtError, KeyMatch};
use self::keys::{ProviderKeys, Want};
pub use self::provider::{KeySource, Provider, parse_providers};
use super::{Error, Result};
use crate::crypto::sha256_hex;
use crate::db::models::{ProvisionedUserRow, UserRow};
use crate::db::{self, DbConn, DbTime, DbUuid};
use crate::domain::Context;
use crate::net::GuardedClient;
use crate::transaction;

/// How often the console providers' endpoints are looked at in the background.
pub const CONSOLE_WARM_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Most providers one token is tried against (those sharing its issuer).
pub const MAX_PROVIDERS_TRIED: usize = 4;
/// Signed-in tokens remembered at most; past that the oldest knowledge starts over.
const SIGNED_IN_KEPT: usize = 10_000;

/// The configured providers, their keys, and the tokens signed in with on this process.
#[derive(Default)]
pub struct IdentityState {
    /// Each provider with its key cache, shared by the providers of one issuer and key source.
    providers: Vec<(Provider, Arc<ProviderKeys>)>,
    /// The endpoints of each provider the console signs in with, by index in `providers`.
    console: Vec<(usize, EndpointCache)>,
    /// Hashes of tokens already signed in with, and their expiry (seconds since the epoch).
    signed_in: Mutex<HashMap<String, i64>>,
    /// Held while a sign-in applies claimed memberships, so that concurrent first requests
    /// with one token apply them once, and none answers before they are applied.
    applying: tokio::sync::Mutex<()>,
}

/// A verified token: the provider that vouched for it and what it says.
#[derive(Debug)]
pub struct Verified<'a> {
    /// The provider whose keys and settings the token passed.
    pub provider: &'a Provider,
    /// The subject and the other claims used.
    pub identity: Identity,
}

impl IdentityState {
    /// The state for `providers`, with no keys fetched yet.
    pub fn new(providers: Vec<Provider>) -> IdentityState {
        let mut with_keys: Vec<(Provider, Arc<ProviderKeys>)> = Vec::with_capacity(providers.len());
        for provider in providers {
            let keys = with_keys
                .iter()
                .find(|(p, _)| p.issuer == provider.issuer && p.keys == provider.keys)
                .map_or_else(Arc::default, |(_, keys)| keys.clone());
            with_keys.push((provider, keys));
        }
        let console = with_keys
            .iter()
            .enumerate()
            .filter(|(_, (p, _))| p.console.is_some())
            .map(|(index, _)| (index, EndpointCache::default()))
            .collect();
        IdentityState {
            providers: with_keys,
            console,
            signed_in: Mutex::default(),
            applying: tokio::sync::Mutex::const_new(()),
        }
    }

    /// Whether any provider is configured (else only API tokens authenticate).
    pub fn is_configured(&self) -> bool {
        !self.providers.is_empty()
    }

    /// The providers the console can sign in with now: those naming a console client whose
    /// OpenID configuration could be read (in the order configured).
    pub async fn console_providers(&self, http: &GuardedClient) -> Vec<ConsoleProvider> {
        self.console_providers_within(http, console::ENDPOINTS_MAX_AGE)
            .await
    }

    /// Whether any provider offers the console a sign-in.
    pub fn offers_console_sign_in(&self) -> bool {
        !self.console.is_empty()
    }

    /// Read the console providers' endpoints again when they are past half their age, so a
    /// page load finds them fresh instead of waiting for the provider: what the background
    /// task does from start-up on, every [`CONSOLE_WARM_EVERY`].
    pub async fn warm_console_providers(&self, http: &GuardedClient) {
        self.console_providers_within(http, console::ENDPOINTS_MAX_AGE / 2)
            .await;
    }

    async fn console_providers_within(
        &self,
        http: &GuardedClient,
        max_age: std::time::Duration,
    ) -> Vec<ConsoleProvider> {
        let lookups = self.console.iter().map(|(index, cache)| async move {
            let (provider, _) = self.providers.get(*index)?;
            let client = provider.console.as_ref()?;
            let endpoints = cache.get_within(http, &provider.issuer, max_age).await?;
            Some(console::describe(provider, client, &endpoints))
        });
        futures_util::future::join_all(lookups)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Verify `token` at `now` (seconds since the epoch) against the providers of its issuer.
    pub async fn verify(
        &self,
        http: &GuardedClient,
        token: &str,
        now: i64,
    ) -> std::result::Result<Verified<'_>, JwtError> {
        let unverified = jwt::parse(token)?;
        let issuer = unverified.issuer().ok_or(JwtError::Claim("iss"))?;
        let mut first_error = None;
        for (provider, keys) in self
            .providers
            .iter()
            .filter(|(p, _)| p.issuer == issuer)
            .take(MAX_PROVIDERS_TRIED)
        {
            let outcome = async {
                let mut found =
                    unverified.check_signature(&keys.get(http, provider, Want::Cached).await?);
                if found == KeyMatch::Unknown {
                    found =
                        unverified.check_signature(&keys.get(http, provider, Want::Refresh).await?);
                }
                match found {
                    KeyMatch::Verified => jwt::check_claims(&unverified.claims, provider, now),
                    KeyMatch::BadSignature => Err(JwtError::Signature),
                    KeyMatch::Unknown => Err(JwtError::UnknownKey),
                }
            }
            .await;
            match outcome {
                Ok(identity) => return Ok(Verified { provider, identity }),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        Err(first_error.unwrap_or(JwtError::UnknownIssuer))
    }

    fn signed_in(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        self.signed_in.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the token with this hash was signed in with already.
    fn has_signed_in(&self, hash: &str) -> bool {
        self.signed_in().contains_key(hash)
    }

    /// Remember that the token with this hash signed in.
    fn remember_sign_in(&self, hash: &str, expires_at: i64, now: i64) {
        let mut signed_in = self.signed_in();
        if signed_in.len() >= SIGNED_IN_KEPT {
            signed_in.retain(|_, exp| exp.saturating_add(jwt::CLOCK_SKEW_SECS) >= now);
            if signed_in.len() >= SIGNED_IN_KEPT {
                signed_in.clear();
            }
        }
        signed_in.insert(hash.to_owned(), expires_at);
    }
}

/// The user of a verified token, created on its subject's first sign-in; on the token's first
/// sign-in, the memberships its provider maps are applied. Returns the user's id.
pub async fn sign_in(
    ctx: &Context,
    token: &str,
    verified: &Verified<'_>,
    now: i64,
) -> Result<Uuid> {
    let Verified { provider, identity } = verified;
    let user = provision(ctx, &provider.issuer, identity).await?;
    let Some(granted) = &identity.memberships else {
        return Ok(user.id.0);
    };
    let hash = sha256_hex(token);
    if ctx.identity.has_signed_in(&hash) {
        return Ok(user.id.0);
    }
    let _applying = ctx.identity.applying.lock().await;
    if !ctx.identity.has_signed_in(&hash) {
        super::workspaces::apply_granted_memberships(ctx, user.id.0, granted, &provider.issuer)
            .await?;
        ctx.identity
            .remember_sign_in(&hash, identity.expires_at, now);
    }
    Ok(user.id.0)
}

/// The user of an issuer's subject, created when there is none. Concurrent first sign-ins of
/// one subject create one user: the lookup is repeated under the users' write lock.
async fn provision(ctx: &Context, issuer: &str, identity: &Identity) -> Result<UserRow> {
    let mut conn = ctx.db.conn().await?;
    if let Some(user) =
        db::access::find_user_by_identity(&mut conn, issuer, &identity.subject).await?
    {
        return Ok(user);
    }
    let user = transaction!(conn, {
        db::access::lock_users(&mut conn).await?;
        if let Some(user) =
            db::access::find_user_by_identity(&mut conn, issuer, &identity.subject).await?
        {
            return Ok(user);
        }
        let wanted = identity.name.as_deref().unwrap_or(&identity.subject);
        let name = free_name(&mut conn, wanted, issuer, &identity.subject).await?;
        let row = ProvisionedUserRow {
            id: DbUuid(Uuid::now_v7()),
            name,
            created_at: DbTime(db::now()),
            issuer: Some(issuer.to_owned()),
            subject: Some(identity.subject.clone()),
        };
        db::access::insert_provisioned_user(&mut conn, &row).await?;
        Ok::<_, Error>(UserRow {
            id: row.id,
            created_at: row.created_at,
            ..UserRow::human(row.name)
        })
    })?;
    tracing::info!(user.id = %user.id.0, issuer, "user created on first sign-in");
    Ok(user)
}

/// A name no other user has ([`super::admin::same_name`]): `wanted` itself, else `wanted`
/// followed by a short digest of the issuer and subject, else that followed by a counter.
/// The same state always gives the same name.
async fn free_name(conn: &mut DbConn, wanted: &str, issuer: &str, subject: &str) -> Result<String> {
    let base: String = wanted.trim().chars().take(100).collect();
    let base = if base.is_empty() {
        "user".to_owned()
    } else {
        base
    };
    let users = db::access::all_users(conn).await?;
    let taken = |name: &str| users.iter().any(|u| super::admin::same_name(&u.name, name));
    if !taken(&base) {
        return Ok(base);
    }
    let digest = sha256_hex(&format!("{issuer}\n{subject}"));
    let tagged = format!("{base} ({})", digest.get(..8).unwrap_or(&digest));
    if !taken(&tagged) {
        return Ok(tagged);
    }
    let mut counter: u64 = 2;
    loop {
        let candidate = format!("{tagged} {counter}");
        if !taken(&candidate) {
            return Ok(candidate);
        }
        counter = counter.saturating_add(1);
    }
}

/// Why a token was refused, for the log.
pub fn log_refusal(error: &JwtError) {
    match error {
        JwtError::Keys(_) => tracing::warn!(%error, "an identity token was refused"),
        _ => tracing::info!(%error, "an identity token was refused"),
    }
}
