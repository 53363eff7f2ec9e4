//! The subscription transports, mounted on the server of `conductor run`
//! and `conductor demo`:
//!
//! - `GET /graphql` — GraphQL subscriptions, graphql-transport-ws ([`graphql`]);
//! - `GET /v1/subscribe` — a plain JSON WebSocket ([`json_ws`]);
//! - `GET /v1/changes?topic=…` — Server-Sent Events ([`sse`]).
//!
//! Every transport authenticates the same way (a bearer JWT, see
//! `subscribe::auth`), is limited the same way (`subscribe::limits`), and
//! serves from the same [`Hub`]; every message carries the cursor after it.

pub mod graphql;
pub mod json_ws;
pub mod sse;

use crate::subscribe::auth::{AuthError, Authenticator, Principal, SCOPE_CHANGES_READ};
use crate::subscribe::limits::{LimitError, Limits, SubscriptionPermit};
use crate::subscribe::metrics as m;
use crate::subscribe::{Hub, StartAt, SubscribeError};
use axum::Router;
use axum::routing::get;
use conductor_engine::cursor::CursorError;
use serde_json::{Value, json};
use std::sync::Arc;

/// Shared state of the transports.
pub struct Subscriptions {
    pub hub: Arc<Hub>,
    pub auth: Authenticator,
    pub limits: Limits,
}

impl Subscriptions {
    /// Authenticates and admits one subscription.
    fn admit(&self, token: Option<&str>) -> Result<(Principal, SubscriptionPermit), Refusal> {
        let principal = self
            .auth
            .verify(token, SCOPE_CHANGES_READ)
            .map_err(Refusal::from)?;
        let permit = self
            .limits
            .admit(&principal.tenant, principal.tier)
            .map_err(Refusal::from)?;
        Ok((principal, permit))
    }
}

/// The routes of every transport; `/graphql` answers `lineage` from
/// `lineage` when given.
pub fn routes(
    state: Arc<Subscriptions>,
    lineage: Option<Arc<dyn graphql::LineageQuery>>,
) -> Router {
    crate::subscribe::metrics::describe();
    let graphql = graphql::GraphqlState {
        schema: graphql::schema(state.clone(), lineage),
        subscriptions: state.clone(),
    };
    Router::new()
        .route("/v1/subscribe", get(json_ws::upgrade))
        .route("/v1/changes", get(sse::changes))
        .with_state(state)
        .merge(
            Router::new()
                .route("/graphql", get(graphql::upgrade).post(graphql::http_query))
                .with_state(graphql),
        )
}

/// Buffer and message limits of a subscription WebSocket. A subscriber
/// sends one small message (or a GraphQL query) and then only reads: a 4 KiB
/// read buffer instead of tungstenite's eager 128 KiB is most of what a
/// connection costs the server, and messages over 64 KiB are refused.
pub(crate) fn sized(ws: axum::extract::WebSocketUpgrade) -> axum::extract::WebSocketUpgrade {
    const READ_BUFFER: usize = 4 * 1024;
    const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
    ws.read_buffer_size(READ_BUFFER)
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
}

/// One served subscription's end, counted once in
/// `conductor_subscription_disconnects_total{transport, reason}` when it
/// drops: `client_gone` unless the transport says why first.
pub(crate) struct Ending {
    transport: &'static str,
    reason: &'static str,
}

impl Ending {
    pub(crate) fn new(transport: &'static str) -> Self {
        Ending {
            transport,
            reason: "client_gone",
        }
    }

    pub(crate) fn because(&mut self, reason: &'static str) {
        self.reason = reason;
    }
}

impl Drop for Ending {
    fn drop(&mut self) {
        metrics::counter!(m::DISCONNECTS_TOTAL, "transport" => self.transport, "reason" => self.reason)
            .increment(1);
    }
}

/// Why a subscription was refused, as every transport reports it.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// Machine-readable: `unauthorized`, `forbidden`, `rate_limited`,
    /// `too_many_subscriptions`, `bad_request`, `unknown_topic`,
    /// `cursor_expired`, `cursor_invalid`, `unavailable`.
    pub code: &'static str,
    pub message: String,
    pub retry_after_ms: Option<u64>,
}

impl Refusal {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Refusal {
            code: "bad_request",
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// The HTTP status of the refusal on the HTTP paths.
    pub fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode as S;
        match self.code {
            "unauthorized" => S::UNAUTHORIZED,
            "forbidden" => S::FORBIDDEN,
            "rate_limited" | "too_many_subscriptions" => S::TOO_MANY_REQUESTS,
            "unknown_topic" => S::NOT_FOUND,
            "cursor_expired" => S::GONE,
            "unavailable" => S::SERVICE_UNAVAILABLE,
            _ => S::BAD_REQUEST,
        }
    }

    /// The error message of the WebSocket transports.
    pub fn to_json(&self) -> Value {
        let mut v = json!({"type": "error", "code": self.code, "message": self.message});
        if let Some(ms) = self.retry_after_ms {
            v["retryAfterMs"] = ms.into();
        }
        v
    }

    pub(crate) fn count(&self) {
        metrics::counter!(m::REJECTIONS_TOTAL, "reason" => self.code).increment(1);
    }
}

impl From<AuthError> for Refusal {
    fn from(e: AuthError) -> Self {
        let code = match e {
            AuthError::MissingScope(_) => "forbidden",
            AuthError::NotConfigured => "unavailable",
            _ => "unauthorized",
        };
        Refusal {
            code,
            message: e.to_string(),
            retry_after_ms: None,
        }
    }
}

impl From<LimitError> for Refusal {
    fn from(e: LimitError) -> Self {
        Refusal {
            code: match e {
                LimitError::Rate { .. } => "rate_limited",
                LimitError::Concurrency { .. } => "too_many_subscriptions",
            },
            retry_after_ms: Some(e.retry_after_ms()),
            message: e.to_string(),
        }
    }
}

impl From<SubscribeError> for Refusal {
    fn from(e: SubscribeError) -> Self {
        let code = match &e {
            SubscribeError::UnknownTopic(_) => "unknown_topic",
            SubscribeError::Cursor(CursorError::Expired { .. }) => "cursor_expired",
            SubscribeError::Cursor(_) => "cursor_invalid",
            SubscribeError::Log(_) => "unavailable",
        };
        Refusal {
            code,
            message: e.to_string(),
            retry_after_ms: None,
        }
    }
}

/// Parses `from`: `earliest` or `latest` (the default).
pub fn parse_start(from: Option<&str>) -> Result<StartAt, Refusal> {
    match from {
        None | Some("latest") => Ok(StartAt::Latest),
        Some("earliest") => Ok(StartAt::Earliest),
        Some(other) => Err(Refusal::bad_request(format!(
            "`from` is `earliest` or `latest`, not `{other}` (to resume, pass a cursor)"
        ))),
    }
}
