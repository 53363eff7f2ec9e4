//! Subscriptions over the JSON WebSocket and SSE transports, against a real
//! server on a loopback port: resume without loss (also across a server
//! restart), the live tail, slow subscribers, tenant isolation, limits.

use conductor_engine::cursor::CursorKey;
use conductor_engine::log::memory::MemoryLog;
use conductor_engine::log::{Log, Record, TopicConfig};
use conductor_replay::server::{Subscriptions, routes};
use conductor_replay::subscribe::auth::{
    Authenticator, Claims, SCOPE_CHANGES_READ, issue, now_secs,
};
use conductor_replay::subscribe::limits::{Limits, LimitsConfig};
use conductor_replay::subscribe::{Filter, Hub, StartAt, SubscribeRequest};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

const SECRET: &[u8] = b"subscription-test-secret-0123456789";
const TOPIC: &str = "ig.changefeed.entities";

fn key() -> Arc<CursorKey> {
    Arc::new(CursorKey::new(b"cursor-key-for-tests-0123456789").unwrap())
}

fn token(tenant: &str, scopes: &[&str]) -> String {
    issue(
        SECRET,
        &Claims {
            tenant: tenant.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            scope: None,
            exp: now_secs() + 600,
            tier: Some("gold".into()),
        },
    )
}

/// A change event like the runtime's, for `tenant`, numbered `n`.
fn change(tenant: &str, n: usize) -> Record {
    let value = json!({"change_id": format!("{tenant}-{n}"), "table": "entities", "op": "upsert",
        "tenant": tenant, "key": {"tenant_id": tenant, "entity_id": format!("e{}", n % 7)},
        "version": n, "row": {"kind": if n.is_multiple_of(2) { "Person" } else { "Organization" }, "attributes": {}}});
    Record::new(
        Some(format!("{tenant}/e{}", n % 7).into_bytes()),
        value.to_string().into_bytes(),
    )
    .with_header("ig-tenant", tenant.as_bytes())
}

/// Appends `range` changes, alternating tenants acme / globex, over 3 partitions.
async fn append(log: &dyn Log, range: std::ops::Range<usize>) {
    for n in range {
        let tenant = if n.is_multiple_of(3) {
            "globex"
        } else {
            "acme"
        };
        log.append(TOPIC, (n % 3) as i32, vec![change(tenant, n)])
            .await
            .unwrap();
    }
}

fn acme_ids(range: std::ops::Range<usize>) -> Vec<String> {
    range
        .filter(|n| n % 3 != 0)
        .map(|n| format!("acme-{n}"))
        .collect()
}

async fn log() -> Arc<dyn Log> {
    let log: Arc<dyn Log> = Arc::new(MemoryLog::new());
    log.create_topic(TOPIC, &TopicConfig::with_partitions(3))
        .await
        .unwrap();
    log
}

struct Server {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

async fn serve(log: Arc<dyn Log>, limits: LimitsConfig) -> Server {
    let state = Arc::new(Subscriptions {
        hub: Hub::new(log, key()),
        auth: Authenticator::new(Some(SECRET)),
        limits: Limits::new(limits),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, routes(state, None)).await.unwrap();
    });
    Server { addr, task }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_subscribe(addr: SocketAddr, msg: Value) -> (Ws, Value) {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/v1/subscribe"))
        .await
        .unwrap();
    ws.send(Message::Text(msg.to_string().into()))
        .await
        .unwrap();
    let first = ws_next(&mut ws).await;
    (ws, first)
}

async fn ws_next(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")
            .expect("socket open")
            .unwrap();
        if let Message::Text(t) = m {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

/// Reads `n` events; returns their change ids and the last cursor.
async fn ws_take(ws: &mut Ws, n: usize) -> (Vec<String>, String) {
    let (mut ids, mut cursor) = (Vec::new(), String::new());
    for _ in 0..n {
        let m = ws_next(ws).await;
        assert_eq!(m["type"], "event", "{m}");
        assert_eq!(m["event"]["tenant"], "acme", "only the token's tenant: {m}");
        ids.push(m["event"]["change_id"].as_str().unwrap().to_string());
        cursor = m["cursor"].as_str().unwrap().to_string();
    }
    (ids, cursor)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_ws_resumes_without_loss_across_disconnects_and_server_restarts() {
    let log = log().await;
    append(log.as_ref(), 0..90).await;
    let server = serve(log.clone(), LimitsConfig::default()).await;
    let acme = token("acme", &[SCOPE_CHANGES_READ]);
    let (mut ws, first) = ws_subscribe(
        server.addr,
        json!({"op": "subscribe", "topic": TOPIC, "from": "earliest", "token": acme}),
    )
    .await;
    assert_eq!(first["type"], "subscribed", "{first}");
    let (mut seen, cursor) = ws_take(&mut ws, 25).await;
    drop(ws);

    // More events while disconnected; then the server itself restarts.
    append(log.as_ref(), 90..150).await;
    server.task.abort();
    let server = serve(log.clone(), LimitsConfig::default()).await;
    let (mut ws, first) = ws_subscribe(
        server.addr,
        json!({"op": "subscribe", "topic": TOPIC, "cursor": cursor, "token": acme}),
    )
    .await;
    assert_eq!(first["type"], "subscribed", "{first}");
    let want = acme_ids(0..150);
    let (rest, _) = ws_take(&mut ws, want.len() - seen.len()).await;
    seen.extend(rest);
    // Live: appended after the subscriber caught up.
    append(log.as_ref(), 150..180).await;
    let (live, _) = ws_take(&mut ws, acme_ids(150..180).len()).await;
    seen.extend(live);
    let mut want = acme_ids(0..180);
    let (mut a, b) = (seen.clone(), want.clone());
    a.sort();
    want.sort();
    assert_eq!(a, want, "every acme event exactly once");
    let _ = b;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_partition_order_holds_and_a_slow_subscriber_catches_up_from_the_log() {
    let log = log().await;
    let hub = Hub::new(log.clone(), key());
    let mut sub = hub
        .subscribe(SubscribeRequest {
            topic: TOPIC.into(),
            tenant: "acme".into(),
            cursor: None,
            start: StartAt::Latest,
            filter: Filter::default(),
        })
        .await
        .unwrap();
    // Far more than the live buffer while the subscriber reads nothing.
    append(log.as_ref(), 0..15_000).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let want = acme_ids(0..15_000);
    let mut last_offset = [-1i64; 3];
    let mut got = Vec::new();
    for _ in 0..want.len() {
        let d = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .unwrap()
            .unwrap();
        assert!(
            d.offset > last_offset[d.partition as usize],
            "order within a partition"
        );
        last_offset[d.partition as usize] = d.offset;
        got.push(d.event["change_id"].as_str().unwrap().to_string());
    }
    let (mut a, mut b) = (got, want);
    a.sort();
    b.sort();
    assert_eq!(
        a, b,
        "nothing lost or repeated after falling behind the tail"
    );
}

/// A minimal SSE client: GET with headers; yields (id, data) per event.
struct Sse {
    reader: BufReader<tokio::net::TcpStream>,
    status: u16,
    head: String,
    buffer: String,
}

async fn sse_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Sse {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nConnection: close\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        head.push_str(&line);
    }
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    Sse {
        reader,
        status,
        head,
        buffer: String::new(),
    }
}

impl Sse {
    /// The next chunk of the chunked body.
    async fn chunk(&mut self) -> Option<String> {
        let mut size = String::new();
        self.reader.read_line(&mut size).await.ok()?;
        let n = usize::from_str_radix(size.trim(), 16).ok()?;
        if n == 0 {
            return None;
        }
        let mut data = vec![0; n + 2];
        self.reader.read_exact(&mut data).await.ok()?;
        data.truncate(n);
        Some(String::from_utf8(data).unwrap())
    }

    async fn event(&mut self) -> Option<(String, String, Value)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut data, mut kind) =
                    (String::new(), String::new(), "message".to_string());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = v.to_string();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        kind = v.to_string();
                    }
                }
                if data.is_empty() || kind == "subscribed" {
                    continue; // keep-alive comment, or the opening event
                }
                return Some((kind, id, serde_json::from_str(&data).unwrap()));
            }
            let c = tokio::time::timeout(Duration::from_secs(10), self.chunk())
                .await
                .expect("an SSE chunk within 10 s")?;
            self.buffer.push_str(&c);
        }
    }

    async fn body(&mut self) -> Value {
        let mut text = String::new();
        if self
            .head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            while let Some(c) = self.chunk().await {
                text.push_str(&c);
            }
        } else {
            self.reader.read_to_string(&mut text).await.unwrap();
        }
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_resumes_with_last_event_id_across_a_server_restart() {
    let log = log().await;
    append(log.as_ref(), 0..60).await;
    let server = serve(log.clone(), LimitsConfig::default()).await;
    let auth = format!("Bearer {}", token("acme", &[SCOPE_CHANGES_READ]));
    let path = format!("/v1/changes?topic={TOPIC}&from=earliest");
    let mut sse = sse_get(server.addr, &path, &[("Authorization", &auth)]).await;
    assert_eq!(sse.status, 200, "{}", sse.head);
    let (mut seen, mut last_id) = (Vec::new(), String::new());
    for _ in 0..15 {
        let (kind, id, event) = sse.event().await.unwrap();
        assert_eq!(kind, "message");
        assert_eq!(event["tenant"], "acme");
        seen.push(event["change_id"].as_str().unwrap().to_string());
        last_id = id;
    }
    drop(sse);
    append(log.as_ref(), 60..120).await;
    server.task.abort();
    let server = serve(log.clone(), LimitsConfig::default()).await;
    let mut sse = sse_get(
        server.addr,
        &format!("/v1/changes?topic={TOPIC}"),
        &[("Authorization", &auth), ("Last-Event-ID", &last_id)],
    )
    .await;
    assert_eq!(sse.status, 200, "{}", sse.head);
    let want = acme_ids(0..120);
    while seen.len() < want.len() {
        let (_, _, event) = sse.event().await.unwrap();
        assert_eq!(event["tenant"], "acme");
        seen.push(event["change_id"].as_str().unwrap().to_string());
    }
    let mut want = want;
    seen.sort();
    want.sort();
    assert_eq!(seen, want, "every acme event exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_never_sees_another_tenants_events_through_any_path() {
    let log = log().await;
    append(log.as_ref(), 0..30).await;
    let server = serve(log.clone(), LimitsConfig::default()).await;
    let acme = token("acme", &[SCOPE_CHANGES_READ]);
    let globex = token("globex", &[SCOPE_CHANGES_READ]);

    // globex's own cursor, then used by acme (swapped), and altered.
    let (mut ws, _) = ws_subscribe(
        server.addr,
        json!({"op": "subscribe", "topic": TOPIC, "from": "earliest", "token": globex}),
    )
    .await;
    let m = ws_next(&mut ws).await;
    assert_eq!(m["event"]["tenant"], "globex");
    let globex_cursor = m["cursor"].as_str().unwrap().to_string();
    let (_, refused) = ws_subscribe(
        server.addr,
        json!({"op": "subscribe", "topic": TOPIC, "cursor": globex_cursor, "token": acme}),
    )
    .await;
    assert_eq!(refused["code"], "cursor_invalid", "{refused}");
    let mut altered = globex_cursor.clone().into_bytes();
    let i = altered.len() / 2;
    altered[i] = if altered[i] == b'A' { b'B' } else { b'A' };
    let (_, refused) = ws_subscribe(
        server.addr,
        json!({"op": "subscribe", "topic": TOPIC, "cursor": String::from_utf8(altered).unwrap(), "token": globex}),
    )
    .await;
    assert_eq!(refused["code"], "cursor_invalid", "{refused}");

    // A filter can't name a tenant, and a forged token gets nothing.
    let (_, refused) = ws_subscribe(
        server.addr,
        json!({"op": "subscribe", "topic": TOPIC, "from": "earliest", "token": acme, "filter": {"tenant": "globex"}}),
    )
    .await;
    assert_eq!(refused["code"], "bad_request", "{refused}");
    let forged = issue(
        b"not-the-server-secret-not-the-server-secret",
        &Claims {
            tenant: "globex".into(),
            scopes: vec![SCOPE_CHANGES_READ.into()],
            scope: None,
            exp: now_secs() + 60,
            tier: None,
        },
    );
    let sse = sse_get(
        server.addr,
        &format!("/v1/changes?topic={TOPIC}&from=earliest"),
        &[("Authorization", &format!("Bearer {forged}"))],
    )
    .await;
    assert_eq!(sse.status, 401, "{}", sse.head);
    let no_scope = token("acme", &["other:read"]);
    let sse = sse_get(
        server.addr,
        &format!("/v1/changes?topic={TOPIC}&from=earliest&access_token={no_scope}"),
        &[],
    )
    .await;
    assert_eq!(sse.status, 403, "{}", sse.head);
    let sse = sse_get(server.addr, &format!("/v1/changes?topic={TOPIC}"), &[]).await;
    assert_eq!(sse.status, 401, "a token is required: {}", sse.head);

    // Filters narrow within the tenant, server-side.
    let mut sse = sse_get(
        server.addr,
        &format!("/v1/changes?topic={TOPIC}&from=earliest&filter=%7B%22kind%22%3A%22Person%22%7D"),
        &[("Authorization", &format!("Bearer {acme}"))],
    )
    .await;
    for _ in 0..5 {
        let (_, _, e) = sse.event().await.unwrap();
        assert_eq!(
            (e["tenant"].as_str(), e["row"]["kind"].as_str()),
            (Some("acme"), Some("Person"))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_answer_with_429_and_retry_after_ms() {
    let log = log().await;
    let server = serve(
        log.clone(),
        LimitsConfig {
            subscribes_per_second: 1,
            subscribe_burst: 2,
            ..Default::default()
        },
    )
    .await;
    let acme = format!("Bearer {}", token("acme", &[SCOPE_CHANGES_READ]));
    let path = format!("/v1/changes?topic={TOPIC}");
    let _a = sse_get(server.addr, &path, &[("Authorization", &acme)]).await;
    let _b = sse_get(server.addr, &path, &[("Authorization", &acme)]).await;
    let mut c = sse_get(server.addr, &path, &[("Authorization", &acme)]).await;
    assert_eq!(c.status, 429, "{}", c.head);
    assert!(
        c.head.to_ascii_lowercase().contains("retry-after: 1"),
        "{}",
        c.head
    );
    let body = c.body().await;
    assert_eq!(body["code"], "rate_limited", "{body}");
    let (_, refused) = ws_subscribe(
        server.addr,
        json!({"op": "subscribe", "topic": TOPIC, "token": token("acme", &[SCOPE_CHANGES_READ])}),
    )
    .await;
    assert_eq!(refused["code"], "rate_limited", "{refused}");
    assert!(refused["retryAfterMs"].as_u64().unwrap() > 0, "{refused}");
    // Another tenant is not affected.
    let other = format!("Bearer {}", token("globex", &[SCOPE_CHANGES_READ]));
    let d = sse_get(server.addr, &path, &[("Authorization", &other)]).await;
    assert_eq!(d.status, 200, "{}", d.head);
}

/// A graphql-transport-ws session: connection_init with the token, then one
/// `changes` subscription from `cursor` (or from the earliest record).
async fn gql_subscribe(addr: SocketAddr, token: &str, cursor: Option<&str>) -> Ws {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{addr}/graphql")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let init =
        json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}});
    ws.send(Message::Text(init.to_string().into()))
        .await
        .unwrap();
    let ack = ws_next(&mut ws).await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    let query = format!(
        r#"subscription($c: String) {{ changes(topic: "{TOPIC}", cursor: $c, from: "earliest") {{ cursor event }} }}"#
    );
    let subscribe = json!({"id": "1", "type": "subscribe",
        "payload": {"query": query, "variables": {"c": cursor}}});
    ws.send(Message::Text(subscribe.to_string().into()))
        .await
        .unwrap();
    ws
}

/// Reads `n` changes of the graphql subscription; their ids and the last cursor.
async fn gql_take(ws: &mut Ws, n: usize) -> (Vec<String>, String) {
    let (mut ids, mut cursor) = (Vec::new(), String::new());
    while ids.len() < n {
        let m = ws_next(ws).await;
        if m["type"] == "ping" {
            continue;
        }
        assert_eq!(m["type"], "next", "{m}");
        let change = &m["payload"]["data"]["changes"];
        assert_eq!(
            change["event"]["tenant"], "acme",
            "only the token's tenant: {m}"
        );
        ids.push(change["event"]["change_id"].as_str().unwrap().to_string());
        cursor = change["cursor"].as_str().unwrap().to_string();
    }
    (ids, cursor)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_resumes_without_loss_across_a_server_restart() {
    let log = log().await;
    append(log.as_ref(), 0..60).await;
    let server = serve(log.clone(), LimitsConfig::default()).await;
    let acme = token("acme", &[SCOPE_CHANGES_READ]);
    let mut ws = gql_subscribe(server.addr, &acme, None).await;
    let (mut seen, cursor) = gql_take(&mut ws, 15).await;
    drop(ws);

    // Written while the client is away and the server is down.
    append(log.as_ref(), 60..120).await;
    server.task.abort();
    let server = serve(log.clone(), LimitsConfig::default()).await;
    let mut ws = gql_subscribe(server.addr, &acme, Some(&cursor)).await;
    let (rest, _) = gql_take(&mut ws, acme_ids(0..120).len() - seen.len()).await;
    seen.extend(rest);
    // Then live, after the resumed subscriber has caught up.
    append(log.as_ref(), 120..150).await;
    let (live, _) = gql_take(&mut ws, acme_ids(120..150).len()).await;
    seen.extend(live);

    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "no change delivered twice");
    let mut want = acme_ids(0..150);
    want.sort();
    assert_eq!(unique, want, "every acme change, none lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_records_reach_only_their_tenants_subscribers() {
    let log = log().await;
    let hub = Hub::new(log.clone(), key());
    let mut acme = hub
        .subscribe(SubscribeRequest {
            topic: TOPIC.into(),
            tenant: "acme".into(),
            cursor: None,
            start: StartAt::Latest,
            filter: Filter::default(),
        })
        .await
        .unwrap();
    // Caught up (there is nothing yet): now it waits on the live tail. The
    // call dropped by the timeout must leave the subscription intact.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), acme.next())
            .await
            .is_err()
    );
    // Another tenant floods the topic with more than a live channel holds...
    for chunk in 0..6 {
        let flood = (0..1000)
            .map(|n| change("globex", chunk * 1000 + n))
            .collect();
        log.append(TOPIC, 0, flood).await.unwrap();
    }
    // ...then acme writes once.
    log.append(TOPIC, 1, vec![change("acme", 1)]).await.unwrap();
    let d = tokio::time::timeout(Duration::from_secs(10), acme.next())
        .await
        .expect("acme's event arrives")
        .unwrap();
    assert_eq!(d.event["change_id"], "acme-1");
    assert!(
        d.live,
        "acme's record came on acme's channel, not from a log read after the flood"
    );
}
