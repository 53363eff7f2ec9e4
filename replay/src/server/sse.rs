//! `GET /v1/changes?topic=…[&from=earliest|latest][&filter=JSON][&cursor=…]`:
//! Server-Sent Events. Each event's `id` is the cursor after it, so a
//! reconnecting `EventSource` (or `curl -H 'Last-Event-ID: …'`) resumes
//! exactly there. The token comes as `Authorization: Bearer`, or as
//! `access_token=` for browsers' EventSource, which can't set headers.
//! The stream opens with an `event: subscribed` carrying the starting
//! cursor. Refusals are plain HTTP errors (401, 403, 404, 410 cursor expired,
//! 429 with `Retry-After`) with a JSON body.

use super::{Ending, Refusal, Subscriptions, parse_start};
use crate::subscribe::auth::bearer;
use crate::subscribe::limits::SubscriptionPermit;
use crate::subscribe::{Filter, SubscribeRequest, Subscription};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::header::{AUTHORIZATION, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;

#[derive(Debug, Deserialize)]
pub struct ChangesQuery {
    topic: Option<String>,
    from: Option<String>,
    filter: Option<String>,
    cursor: Option<String>,
    access_token: Option<String>,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        self.count();
        let mut response = (self.status(), Json(self.to_json())).into_response();
        if let Some(ms) = self.retry_after_ms
            && let Ok(v) = HeaderValue::from_str(&ms.div_ceil(1000).max(1).to_string())
        {
            response.headers_mut().insert(RETRY_AFTER, v);
        }
        response
    }
}

pub async fn changes(
    State(state): State<Arc<Subscriptions>>,
    headers: HeaderMap,
    Query(q): Query<ChangesQuery>,
) -> Result<Response, Refusal> {
    let topic = q
        .topic
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Refusal::bad_request("`topic` is required: /v1/changes?topic=…"))?;
    let start = parse_start(q.from.as_deref())?;
    let filter_json = match q.filter.as_deref() {
        None => None,
        Some(f) => Some(
            serde_json::from_str::<serde_json::Value>(f)
                .map_err(|e| Refusal::bad_request(format!("`filter` is not JSON: {e}")))?,
        ),
    };
    let filter = Filter::parse(filter_json.as_ref()).map_err(Refusal::bad_request)?;
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string);
    let token = bearer(headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()))
        .map(str::to_string)
        .or(q.access_token);
    let (principal, permit) = state.admit(token.as_deref())?;
    let sub = state
        .hub
        .subscribe(SubscribeRequest {
            topic,
            tenant: principal.tenant,
            cursor: last_event_id.or(q.cursor),
            start,
            filter,
        })
        .await?;
    // A first event right away: it flushes the response head (an
    // EventSource opens now, not at the first change) and carries the
    // starting cursor.
    let opening = Event::default()
        .event("subscribed")
        .id(sub.cursor())
        .data(serde_json::json!({"topic": sub.topic(), "cursor": sub.cursor()}).to_string());
    let stream = futures::stream::once(async move { Ok::<_, Infallible>(opening) }).chain(
        futures::stream::unfold(Some((sub, permit, Ending::new("sse"))), next_event),
    );
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

type StreamState = Option<(Subscription, SubscriptionPermit, Ending)>;

async fn next_event(state: StreamState) -> Option<(Result<Event, Infallible>, StreamState)> {
    let (mut sub, permit, mut ending) = state?;
    match sub.next().await {
        Ok(d) => {
            permit.paced().await;
            let event = Event::default().id(d.cursor).data(d.event.text());
            Some((Ok(event), Some((sub, permit, ending))))
        }
        Err(e) => {
            let refusal: Refusal = e.into();
            ending.because(refusal.code);
            let event = Event::default()
                .event("error")
                .data(refusal.to_json().to_string());
            Some((Ok(event), None))
        }
    }
}
