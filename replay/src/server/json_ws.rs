//! `GET /v1/subscribe`: a plain JSON WebSocket.
//!
//! Client → server, once: `{"op":"subscribe","topic":"…","cursor":"…",
//! "from":"earliest|latest","filter":{…},"token":"…"}` (the token may come
//! instead as `Authorization: Bearer` on the upgrade request).
//! Server → client: `{"type":"subscribed","topic","cursor"}`, then
//! `{"type":"event","cursor","event"}` per event; a refusal or failure is
//! `{"type":"error","code","message"[,"retryAfterMs"]}` followed by close.

use super::{Ending, Refusal, Subscriptions, parse_start, sized};
use crate::subscribe::auth::bearer;
use crate::subscribe::{Filter, SubscribeRequest};
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::response::Response;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// How long a client may take to send its subscribe message.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn upgrade(
    State(state): State<Arc<Subscriptions>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let header_token =
        bearer(headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok())).map(str::to_string);
    sized(ws).on_upgrade(move |socket| session(state, socket, header_token))
}

async fn send(socket: &mut WebSocket, v: Value) -> bool {
    send_text(socket, v.to_string()).await
}

async fn send_text(socket: &mut WebSocket, text: String) -> bool {
    socket.send(Message::Text(text.into())).await.is_ok()
}

/// `{"type":"event","cursor":…,"event":…}` with the event's JSON text
/// spliced in: it is shared by every subscriber and already serialized.
fn event_message(cursor: &str, event: &str) -> String {
    let cursor = Value::from(cursor).to_string();
    let mut m = String::with_capacity(36 + cursor.len() + event.len());
    m.push_str(r#"{"type":"event","cursor":"#);
    m.push_str(&cursor);
    m.push_str(r#","event":"#);
    m.push_str(event);
    m.push('}');
    m
}

async fn refuse(mut socket: WebSocket, refusal: Refusal) {
    refusal.count();
    let _ = send(&mut socket, refusal.to_json()).await;
    let _ = socket.send(Message::Close(None)).await;
}

async fn session(state: Arc<Subscriptions>, mut socket: WebSocket, header_token: Option<String>) {
    let first = match tokio::time::timeout(SUBSCRIBE_TIMEOUT, socket.recv()).await {
        Ok(Some(Ok(Message::Text(t)))) => t,
        Ok(Some(Ok(_))) => {
            return refuse(socket, Refusal::bad_request("expected a JSON text message")).await;
        }
        Ok(_) => return,
        Err(_) => {
            return refuse(
                socket,
                Refusal::bad_request("no subscribe message within 10 s"),
            )
            .await;
        }
    };
    let request = match parse_subscribe(first.as_str()) {
        Ok(r) => r,
        Err(r) => return refuse(socket, r).await,
    };
    let token = request.token.clone().or(header_token);
    let (principal, permit) = match state.admit(token.as_deref()) {
        Ok(p) => p,
        Err(r) => return refuse(socket, r).await,
    };
    let SubscribeMessage {
        topic,
        cursor,
        start,
        filter,
        ..
    } = request;
    let mut sub = match state
        .hub
        .subscribe(SubscribeRequest {
            topic: topic.clone(),
            tenant: principal.tenant,
            cursor,
            start,
            filter,
        })
        .await
    {
        Ok(s) => s,
        Err(e) => return refuse(socket, e.into()).await,
    };
    if !send(
        &mut socket,
        json!({"type": "subscribed", "topic": topic, "cursor": sub.cursor()}),
    )
    .await
    {
        return;
    }
    let mut ending = Ending::new("json_ws");
    let reason = loop {
        tokio::select! {
            delivery = sub.next() => match delivery {
                Ok(d) => {
                    permit.paced().await;
                    if !send_text(&mut socket, event_message(&d.cursor, d.event.text())).await {
                        break "client_gone";
                    }
                }
                Err(e) => {
                    let r: Refusal = e.into();
                    let _ = send(&mut socket, r.to_json()).await;
                    break r.code;
                }
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break "client_closed",
                Some(Ok(_)) => {} // pings are answered by axum; other messages are ignored
            },
        }
    };
    ending.because(reason);
}

/// The first message of a `/v1/subscribe` session, parsed.
#[derive(Debug)]
pub struct SubscribeMessage {
    pub topic: String,
    pub cursor: Option<String>,
    pub start: crate::subscribe::StartAt,
    pub filter: Filter,
    /// A token in the message; the `Authorization` header is the other way.
    pub token: Option<String>,
}

/// Parses the first message a client sends (outside input: fuzzed by
/// `fuzz/fuzz_targets/subscribe_message.rs`).
pub fn parse_subscribe(text: &str) -> Result<SubscribeMessage, Refusal> {
    let msg: Value =
        serde_json::from_str(text).map_err(|e| Refusal::bad_request(format!("not JSON: {e}")))?;
    if msg.get("op").and_then(Value::as_str) != Some("subscribe") {
        return Err(Refusal::bad_request(
            r#"the first message must be {"op":"subscribe","topic":"…"}"#,
        ));
    }
    let topic = msg
        .get("topic")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Refusal::bad_request("`topic` is required"))?
        .to_string();
    let text_field = |name: &str| msg.get(name).and_then(Value::as_str).map(str::to_string);
    let start = parse_start(msg.get("from").and_then(Value::as_str))?;
    let filter = Filter::parse(msg.get("filter")).map_err(Refusal::bad_request)?;
    Ok(SubscribeMessage {
        topic,
        cursor: text_field("cursor"),
        start,
        filter,
        token: text_field("token"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_message_is_the_json_of_its_parts() {
        let m = event_message("c\"1", r#"{"tenant":"acme","n":[1,2]}"#);
        let v: Value = serde_json::from_str(&m).unwrap();
        assert_eq!(
            v,
            json!({"type": "event", "cursor": "c\"1", "event": {"tenant": "acme", "n": [1, 2]}})
        );
    }

    #[test]
    fn the_first_message_names_what_is_wrong() {
        let ok = parse_subscribe(
            r#"{"op":"subscribe","topic":"t","from":"earliest","token":"x","filter":{"table":"entities"}}"#,
        )
        .unwrap();
        assert_eq!(ok.topic, "t");
        assert_eq!(ok.token.as_deref(), Some("x"));
        assert!(matches!(ok.start, crate::subscribe::StartAt::Earliest));
        for (text, says) in [
            ("{", "not JSON"),
            (r#"{"op":"sub","topic":"t"}"#, "first message must be"),
            (r#"{"op":"subscribe"}"#, "`topic` is required"),
            (
                r#"{"op":"subscribe","topic":"t","from":"now"}"#,
                "`from` is",
            ),
            (
                r#"{"op":"subscribe","topic":"t","filter":3}"#,
                "filter must be",
            ),
        ] {
            let refusal = parse_subscribe(text).unwrap_err();
            assert!(
                refusal.message.contains(says),
                "{text}: {}",
                refusal.message
            );
        }
    }
}
