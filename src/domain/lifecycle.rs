//! How a server's status moves: one pure function from the current state, a few facts about
//! the server and an event, to the next state. Every status write goes through [`next`], so the
//! rules live here and nowhere else, and a table-driven test covers them all.
//!
//! The rules, in short:
//! - A server starts disconnected; an OAuth server needs authorization, others need nothing.
//!   A server whose auth type could not be detected stays undetected (reason
//!   `detection_failed`) until detection succeeds.
//! - A change of URL, auth type, client credentials or headers starts over.
//! - A successful contact connects; failures count, and the third in a row is an `ERROR`. An
//!   authorization problem never counts as a failure.
//! - Static headers the server rejects are their own state (`HEADERS_REJECTED`), never an OAuth
//!   prompt; a later success recovers.
//! - A flow in progress never hides a working grant: with usable tokens, starting a flow leaves
//!   the status as it is, and a flow that fails or expires falls back to what the grant says.
//! - A refresh never clears a scope problem: only a new authorization does.
//! - Grant and flow events change nothing for a server that does not use OAuth.

use super::limits::Quota;
use crate::db::types::{AuthStatus, AuthType, ConnectionStatus, StatusReason};

/// Failures in a row before a server is marked `ERROR`.
pub const MAX_CONSECUTIVE_FAILURES: i32 = 3;

/// A server's status at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct State {
    /// Whether Switchboard can talk to it.
    pub connection: ConnectionStatus,
    /// Where its credentials stand.
    pub auth: AuthStatus,
    /// Why the status last changed.
    pub reason: Option<StatusReason>,
    /// Failed contacts in a row.
    pub failures: i32,
}

/// What the transition needs to know about the server besides its status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facts {
    /// How it authenticates (after the event, for a change).
    pub auth_type: AuthType,
    /// Whether usable OAuth tokens are stored.
    pub has_tokens: bool,
}

/// Something that happened to a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// It was registered (its auth type given, detected, or undetected).
    Created,
    /// Detection ran again and found how it authenticates.
    Detected,
    /// Detection ran again and could not tell.
    DetectionFailed,
    /// A setting that decides how to reach it changed.
    Changed(Change),
    /// It was enabled.
    Enabled,
    /// It was disabled.
    Disabled,
    /// A call or a listing succeeded.
    Reached,
    /// The server said its tools changed, and a new listing succeeded.
    ToolsChanged,
    /// A call or a listing failed on the network or with an error answer.
    Unreachable,
    /// A listing was refused for exceeding a quota.
    QuotaExceeded(Quota),
    /// It rejected the static headers (`401`/`403` without OAuth).
    HeadersRejected,
    /// It needs an OAuth authorization that is missing or no longer accepted.
    AuthorizationNeeded,
    /// The authorization server rejected a refresh: the grant is gone.
    RefreshRejected {
        /// The client registration was rejected (rather than the refresh token).
        client: bool,
    },
    /// The stored tokens can no longer be read.
    TokensUnreadable,
    /// A refresh failed for a transient reason; the tokens stay.
    RefreshFailed,
    /// A refresh succeeded.
    Refreshed,
    /// It asked for more scopes than were granted.
    ScopeNeeded,
    /// Someone started the OAuth flow.
    FlowStarted,
    /// A flow ended without a new grant: the authorization server refused, the code exchange
    /// failed, the addresses were unsafe.
    FlowFailed(StatusReason),
    /// A flow expired without completing.
    FlowExpired,
    /// A flow completed: a new grant is stored.
    Authorized,
    /// The authorization was withdrawn.
    Disconnected,
}

/// A change of setting that starts the status over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The URL.
    Url,
    /// The auth type.
    AuthType,
    /// The OAuth client credentials.
    Credentials,
    /// The static headers.
    Headers,
}

impl Change {
    fn reason(self) -> StatusReason {
        match self {
            Change::Url => StatusReason::UrlChanged,
            Change::AuthType => StatusReason::AuthTypeChanged,
            Change::Credentials => StatusReason::CredentialsChanged,
            Change::Headers => StatusReason::HeadersChanged,
        }
    }
}

/// The status of a server nobody has contacted yet.
pub fn initial(facts: Facts, reason: StatusReason) -> State {
    State {
        connection: ConnectionStatus::Disconnected,
        auth: match facts.auth_type {
            AuthType::Oauth => AuthStatus::AuthorizationRequired,
            AuthType::None | AuthType::Headers | AuthType::Undetected => AuthStatus::NotRequired,
        },
        reason: Some(reason),
        failures: 0,
    }
}

/// The next status of a server in `state` when `event` happens. Returns `state` itself when
/// nothing a user would see changes.
pub fn next(state: State, facts: Facts, event: Event) -> State {
    let oauth = facts.auth_type == AuthType::Oauth;
    // What the grant says, when no flow or failure is in the way.
    let grant_status = if facts.has_tokens {
        AuthStatus::Authorized
    } else {
        AuthStatus::AuthorizationRequired
    };
    let with = |connection, auth, reason| State {
        connection,
        auth,
        reason: Some(reason),
        ..state
    };
    // Grants and flows concern OAuth servers only; for the others these events change nothing.
    let about_grants = matches!(
        event,
        Event::RefreshRejected { .. }
            | Event::TokensUnreadable
            | Event::RefreshFailed
            | Event::Refreshed
            | Event::ScopeNeeded
            | Event::FlowStarted
            | Event::FlowFailed(_)
            | Event::FlowExpired
            | Event::Authorized
            | Event::Disconnected
    );
    if about_grants && !oauth {
        return state;
    }
    match event {
        Event::Created => initial(
            facts,
            if facts.auth_type == AuthType::Undetected {
                StatusReason::DetectionFailed
            } else {
                StatusReason::Created
            },
        ),
        Event::Detected => initial(facts, StatusReason::Detected),
        Event::DetectionFailed => initial(facts, StatusReason::DetectionFailed),
        Event::Changed(change) => initial(facts, change.reason()),
        Event::Enabled => State {
            failures: 0,
            ..with(
                ConnectionStatus::Disconnected,
                state.auth,
                StatusReason::Enabled,
            )
        },
        Event::Disabled => State {
            failures: 0,
            ..with(
                ConnectionStatus::Disconnected,
                state.auth,
                StatusReason::Disabled,
            )
        },
        Event::Reached => {
            let auth = match (facts.auth_type, state.auth) {
                // One successful call proves the grant works, not that it has every scope.
                (AuthType::Oauth, AuthStatus::InsufficientScope) => AuthStatus::InsufficientScope,
                (AuthType::Oauth, _) => AuthStatus::Authorized,
                (_, _) => AuthStatus::NotRequired,
            };
            if state.connection == ConnectionStatus::Connected
                && state.auth == auth
                && state.failures == 0
            {
                return state;
            }
            // Right after an authorization the listing keeps that reason.
            let reason = if state.reason == Some(StatusReason::Authorized) && state.auth == auth {
                StatusReason::Authorized
            } else {
                StatusReason::Connected
            };
            State {
                failures: 0,
                ..with(ConnectionStatus::Connected, auth, reason)
            }
        }
        Event::ToolsChanged => {
            // Reached, and said so, unless the reason tells of something still to be done.
            let reached = next(state, facts, Event::Reached);
            if reached.connection == ConnectionStatus::Connected
                && matches!(
                    reached.auth,
                    AuthStatus::Authorized | AuthStatus::NotRequired
                )
            {
                State {
                    reason: Some(StatusReason::ToolsChanged),
                    ..reached
                }
            } else {
                reached
            }
        }
        Event::Unreachable => {
            let failures = state.failures.saturating_add(1);
            let connection = if failures >= MAX_CONSECUTIVE_FAILURES {
                ConnectionStatus::Error
            } else {
                state.connection
            };
            State {
                failures,
                ..with(connection, state.auth, StatusReason::Unreachable)
            }
        }
        Event::QuotaExceeded(quota) => {
            let reason = match quota {
                Quota::ToolsPerServer => StatusReason::TooManyTools,
                Quota::CatalogueBytes | Quota::ServersPerWorkspace => {
                    StatusReason::CatalogueTooLarge
                }
            };
            with(state.connection, state.auth, reason)
        }
        Event::HeadersRejected if !oauth => with(
            ConnectionStatus::Disconnected,
            AuthStatus::HeadersRejected,
            StatusReason::HeadersRejected,
        ),
        // An authorization already known to be missing keeps the reason it went missing for
        // (a rejected refresh or client, unreadable tokens): the failed use that follows says
        // nothing new.
        Event::HeadersRejected | Event::AuthorizationNeeded
            if oauth
                && state.connection == ConnectionStatus::Disconnected
                && state.auth == AuthStatus::AuthorizationRequired =>
        {
            state
        }
        // An OAuth server's 401 is about its grant.
        Event::HeadersRejected | Event::AuthorizationNeeded => with(
            ConnectionStatus::Disconnected,
            if oauth {
                AuthStatus::AuthorizationRequired
            } else {
                AuthStatus::HeadersRejected
            },
            if oauth {
                StatusReason::AuthorizationRequired
            } else {
                StatusReason::HeadersRejected
            },
        ),
        Event::RefreshRejected { client } => with(
            ConnectionStatus::Disconnected,
            AuthStatus::AuthorizationRequired,
            if client {
                StatusReason::ClientRejected
            } else {
                StatusReason::RefreshRejected
            },
        ),
        Event::TokensUnreadable => with(
            ConnectionStatus::Disconnected,
            AuthStatus::AuthorizationRequired,
            StatusReason::TokensUnreadable,
        ),
        Event::RefreshFailed => with(
            state.connection,
            AuthStatus::RefreshFailed,
            StatusReason::RefreshFailed,
        ),
        Event::Refreshed => match state.auth {
            AuthStatus::Authorized | AuthStatus::InsufficientScope => state,
            _ => with(
                state.connection,
                AuthStatus::Authorized,
                StatusReason::TokenRefreshed,
            ),
        },
        Event::ScopeNeeded => with(
            state.connection,
            AuthStatus::InsufficientScope,
            StatusReason::InsufficientScope,
        ),
        Event::FlowStarted if facts.has_tokens => state,
        Event::FlowStarted => with(
            state.connection,
            AuthStatus::Authorizing,
            StatusReason::FlowStarted,
        ),
        Event::FlowFailed(reason) => {
            let auth = match state.auth {
                AuthStatus::Authorizing => grant_status,
                other if facts.has_tokens => other,
                _ => AuthStatus::AuthorizationRequired,
            };
            with(state.connection, auth, reason)
        }
        Event::FlowExpired if state.auth == AuthStatus::Authorizing => {
            with(state.connection, grant_status, StatusReason::FlowExpired)
        }
        Event::FlowExpired => state,
        Event::Authorized => with(
            state.connection,
            AuthStatus::Authorized,
            StatusReason::Authorized,
        ),
        Event::Disconnected => with(
            ConnectionStatus::Disconnected,
            AuthStatus::AuthorizationRequired,
            StatusReason::Disconnected,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use AuthStatus as A;
    use ConnectionStatus as C;
    use StatusReason as R;

    const OAUTH: Facts = Facts {
        auth_type: AuthType::Oauth,
        has_tokens: true,
    };
    const OAUTH_NO_TOKENS: Facts = Facts {
        auth_type: AuthType::Oauth,
        has_tokens: false,
    };
    const HEADERS: Facts = Facts {
        auth_type: AuthType::Headers,
        has_tokens: false,
    };
    const UNDETECTED: Facts = Facts {
        auth_type: AuthType::Undetected,
        has_tokens: false,
    };

    fn state(connection: C, auth: A, reason: R, failures: i32) -> State {
        State {
            connection,
            auth,
            reason: Some(reason),
            failures,
        }
    }

    /// Every rule, one row each: (from, facts, event, to).
    #[test]
    fn every_transition() {
        let connected = state(C::Connected, A::Authorized, R::Connected, 0);
        let headers_ok = state(C::Connected, A::NotRequired, R::Connected, 0);
        let authorizing = state(C::Disconnected, A::Authorizing, R::FlowStarted, 0);
        #[rustfmt::skip]
        let rows: Vec<(State, Facts, Event, State)> = vec![
            // Creation and detection.
            (connected, OAUTH_NO_TOKENS, Event::Created, state(C::Disconnected, A::AuthorizationRequired, R::Created, 0)),
            (connected, HEADERS, Event::Created, state(C::Disconnected, A::NotRequired, R::Created, 0)),
            (connected, UNDETECTED, Event::Created, state(C::Disconnected, A::NotRequired, R::DetectionFailed, 0)),
            (state(C::Disconnected, A::NotRequired, R::DetectionFailed, 0), OAUTH_NO_TOKENS, Event::Detected, state(C::Disconnected, A::AuthorizationRequired, R::Detected, 0)),
            (headers_ok, UNDETECTED, Event::DetectionFailed, state(C::Disconnected, A::NotRequired, R::DetectionFailed, 0)),
            // Changes start over.
            (state(C::Error, A::Authorized, R::Unreachable, 5), OAUTH_NO_TOKENS, Event::Changed(Change::Url), state(C::Disconnected, A::AuthorizationRequired, R::UrlChanged, 0)),
            (connected, HEADERS, Event::Changed(Change::AuthType), state(C::Disconnected, A::NotRequired, R::AuthTypeChanged, 0)),
            (connected, OAUTH_NO_TOKENS, Event::Changed(Change::Credentials), state(C::Disconnected, A::AuthorizationRequired, R::CredentialsChanged, 0)),
            (state(C::Disconnected, A::HeadersRejected, R::HeadersRejected, 0), HEADERS, Event::Changed(Change::Headers), state(C::Disconnected, A::NotRequired, R::HeadersChanged, 0)),
            // Enabling and disabling.
            (connected, OAUTH, Event::Disabled, state(C::Disconnected, A::Authorized, R::Disabled, 0)),
            (state(C::Disconnected, A::Authorized, R::Disabled, 2), OAUTH, Event::Enabled, state(C::Disconnected, A::Authorized, R::Enabled, 0)),
            // Contact.
            (state(C::Disconnected, A::AuthorizationRequired, R::Created, 0), OAUTH, Event::Reached, state(C::Connected, A::Authorized, R::Connected, 0)),
            (state(C::Disconnected, A::Authorized, R::Authorized, 0), OAUTH, Event::Reached, state(C::Connected, A::Authorized, R::Authorized, 0)),
            (state(C::Error, A::Authorized, R::Unreachable, 4), OAUTH, Event::Reached, state(C::Connected, A::Authorized, R::Connected, 0)),
            (state(C::Connected, A::InsufficientScope, R::InsufficientScope, 0), OAUTH, Event::Reached, state(C::Connected, A::InsufficientScope, R::InsufficientScope, 0)),
            (state(C::Disconnected, A::HeadersRejected, R::HeadersRejected, 0), HEADERS, Event::Reached, state(C::Connected, A::NotRequired, R::Connected, 0)),
            (headers_ok, HEADERS, Event::Reached, headers_ok),
            (headers_ok, HEADERS, Event::ToolsChanged, state(C::Connected, A::NotRequired, R::ToolsChanged, 0)),
            (state(C::Error, A::Authorized, R::Unreachable, 4), OAUTH, Event::ToolsChanged, state(C::Connected, A::Authorized, R::ToolsChanged, 0)),
            (state(C::Connected, A::InsufficientScope, R::InsufficientScope, 0), OAUTH, Event::ToolsChanged, state(C::Connected, A::InsufficientScope, R::InsufficientScope, 0)),
            (connected, OAUTH, Event::Unreachable, state(C::Connected, A::Authorized, R::Unreachable, 1)),
            (state(C::Connected, A::Authorized, R::Unreachable, 2), OAUTH, Event::Unreachable, state(C::Error, A::Authorized, R::Unreachable, 3)),
            (state(C::Error, A::Authorized, R::Unreachable, i32::MAX), OAUTH, Event::Unreachable, state(C::Error, A::Authorized, R::Unreachable, i32::MAX)),
            (connected, OAUTH, Event::QuotaExceeded(Quota::ToolsPerServer), state(C::Connected, A::Authorized, R::TooManyTools, 0)),
            (connected, OAUTH, Event::QuotaExceeded(Quota::CatalogueBytes), state(C::Connected, A::Authorized, R::CatalogueTooLarge, 0)),
            // Credentials refused.
            (headers_ok, HEADERS, Event::HeadersRejected, state(C::Disconnected, A::HeadersRejected, R::HeadersRejected, 0)),
            (headers_ok, HEADERS, Event::AuthorizationNeeded, state(C::Disconnected, A::HeadersRejected, R::HeadersRejected, 0)),
            (connected, OAUTH, Event::HeadersRejected, state(C::Disconnected, A::AuthorizationRequired, R::AuthorizationRequired, 0)),
            (connected, OAUTH, Event::AuthorizationNeeded, state(C::Disconnected, A::AuthorizationRequired, R::AuthorizationRequired, 0)),
            (connected, OAUTH, Event::RefreshRejected { client: false }, state(C::Disconnected, A::AuthorizationRequired, R::RefreshRejected, 0)),
            (connected, OAUTH, Event::RefreshRejected { client: true }, state(C::Disconnected, A::AuthorizationRequired, R::ClientRejected, 0)),
            (state(C::Disconnected, A::AuthorizationRequired, R::ClientRejected, 0), OAUTH, Event::AuthorizationNeeded, state(C::Disconnected, A::AuthorizationRequired, R::ClientRejected, 0)),
            (connected, OAUTH, Event::TokensUnreadable, state(C::Disconnected, A::AuthorizationRequired, R::TokensUnreadable, 0)),
            // Refresh.
            (connected, OAUTH, Event::RefreshFailed, state(C::Connected, A::RefreshFailed, R::RefreshFailed, 0)),
            (state(C::Connected, A::RefreshFailed, R::RefreshFailed, 0), OAUTH, Event::Refreshed, state(C::Connected, A::Authorized, R::TokenRefreshed, 0)),
            (connected, OAUTH, Event::Refreshed, connected),
            (state(C::Connected, A::InsufficientScope, R::InsufficientScope, 0), OAUTH, Event::Refreshed, state(C::Connected, A::InsufficientScope, R::InsufficientScope, 0)),
            (connected, OAUTH, Event::ScopeNeeded, state(C::Connected, A::InsufficientScope, R::InsufficientScope, 0)),
            // Flows.
            (connected, OAUTH, Event::FlowStarted, connected),
            (state(C::Disconnected, A::AuthorizationRequired, R::Created, 0), OAUTH_NO_TOKENS, Event::FlowStarted, authorizing),
            (authorizing, OAUTH_NO_TOKENS, Event::FlowFailed(R::ProviderError), state(C::Disconnected, A::AuthorizationRequired, R::ProviderError, 0)),
            (state(C::Connected, A::Authorizing, R::FlowStarted, 0), OAUTH, Event::FlowFailed(R::TokenExchangeFailed), state(C::Connected, A::Authorized, R::TokenExchangeFailed, 0)),
            (state(C::Connected, A::InsufficientScope, R::InsufficientScope, 0), OAUTH, Event::FlowFailed(R::ProviderError), state(C::Connected, A::InsufficientScope, R::ProviderError, 0)),
            (authorizing, OAUTH_NO_TOKENS, Event::FlowExpired, state(C::Disconnected, A::AuthorizationRequired, R::FlowExpired, 0)),
            (state(C::Connected, A::Authorizing, R::FlowStarted, 0), OAUTH, Event::FlowExpired, state(C::Connected, A::Authorized, R::FlowExpired, 0)),
            (connected, OAUTH, Event::FlowExpired, connected),
            (authorizing, OAUTH, Event::Authorized, state(C::Disconnected, A::Authorized, R::Authorized, 0)),
            (connected, OAUTH, Event::Disconnected, state(C::Disconnected, A::AuthorizationRequired, R::Disconnected, 0)),
            (headers_ok, HEADERS, Event::Disconnected, headers_ok),
            (headers_ok, HEADERS, Event::FlowStarted, headers_ok),
        ];
        for (i, (from, facts, event, to)) in rows.into_iter().enumerate() {
            assert_eq!(
                next(from, facts, event),
                to,
                "row {i}: {event:?} from {from:?}"
            );
        }
    }

    /// No event can leave a server without a reason, and the failure count never goes
    /// negative or wraps, whatever the starting point.
    #[test]
    fn every_state_and_event_stays_well_formed() {
        let events = [
            Event::Created,
            Event::Detected,
            Event::DetectionFailed,
            Event::Changed(Change::Url),
            Event::Enabled,
            Event::Disabled,
            Event::Reached,
            Event::ToolsChanged,
            Event::Unreachable,
            Event::QuotaExceeded(Quota::ToolsPerServer),
            Event::HeadersRejected,
            Event::AuthorizationNeeded,
            Event::RefreshRejected { client: false },
            Event::TokensUnreadable,
            Event::RefreshFailed,
            Event::Refreshed,
            Event::ScopeNeeded,
            Event::FlowStarted,
            Event::FlowFailed(R::ProviderError),
            Event::FlowExpired,
            Event::Authorized,
            Event::Disconnected,
        ];
        let facts = [OAUTH, OAUTH_NO_TOKENS, HEADERS, UNDETECTED];
        for connection in ConnectionStatus::ALL {
            for auth in AuthStatus::ALL {
                for failures in [0, 2, i32::MAX] {
                    for facts in facts {
                        for event in events {
                            let from = state(*connection, *auth, R::Created, failures);
                            let to = next(from, facts, event);
                            assert!(to.reason.is_some(), "{event:?} from {from:?}");
                            assert!(to.failures >= 0, "{event:?} from {from:?}");
                            if facts.auth_type != AuthType::Oauth {
                                assert!(
                                    !matches!(
                                        to.auth,
                                        A::AuthorizationRequired | A::Authorizing | A::Authorized
                                    ) || to.auth == from.auth,
                                    "a server without OAuth is never asked to authorize: \
                                     {event:?} from {from:?} gave {to:?}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
