//! `GET /graphql`: GraphQL subscriptions over WebSocket
//! (`graphql-transport-ws`, async-graphql).
//!
//! ```graphql
//! subscription { changes(topic: "ig.changefeed.entities", filter: {kind: "Person"}, cursor: "…") { cursor event } }
//! subscription { entityChanged(tenantId: "acme", cursor: "…") { cursor event } }
//! ```
//!
//! `event` is the whole change (or ingest) event as JSON, with its tenant
//! and stable `change_id`; `cursor` resumes right after it. The token comes
//! in the `connection_init` payload (`{"Authorization": "Bearer …"}` or
//! `{"token": "…"}`) or as `Authorization: Bearer` on the upgrade request.
//! Refusals are GraphQL errors with `extensions.code` (and `retryAfterMs`).
//!
//! Queries also over `POST /graphql` (bearer token in `Authorization`):
//!
//! ```graphql
//! { lineage(datasetId: "dataset:NS:NAME", maxDepth: 5) }
//! ```
//!
//! answers the lineage graph in Marquez's shape (scope `lineage.read`), from
//! the [`LineageQuery`] the server was given.

use super::{Ending, Refusal, Subscriptions, parse_start, sized};
use crate::subscribe::auth::{Principal, SCOPE_CHANGES_READ, bearer};
use crate::subscribe::{Filter, SubscribeRequest};
use async_graphql::{
    Context, Data, EmptyMutation, ErrorExtensions, ID, Json, Object, Schema, SimpleObject,
    Subscription,
};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::response::Response;
use futures::Stream;
use serde_json::Value;
use std::sync::Arc;

/// The changefeed `entityChanged` serves.
pub const ENTITIES_CHANGEFEED: &str = "ig.changefeed.entities";
/// The scope `lineage` needs.
pub const SCOPE_LINEAGE_READ: &str = "lineage.read";

/// Answers `lineage(datasetId, maxDepth)`: the lineage graph of a tenant
/// (the server that runs the lineage topology plugs its graph in).
pub trait LineageQuery: Send + Sync {
    /// Marquez's `{"graph": [...]}` for `node` (`dataset:NS:NAME`,
    /// `job:NS:NAME`), or why not.
    fn lineage(&self, tenant: &str, node: &str, depth: usize) -> Result<Value, String>;
}

/// The lineage source of a schema, as schema data.
#[derive(Clone)]
pub struct LineageSource(pub Arc<dyn LineageQuery>);

pub type ChangesSchema = Schema<Query, EmptyMutation, SubscriptionRoot>;

/// Builds the schema over `subscriptions` (and `lineage`, when served).
pub fn schema(
    subscriptions: Arc<Subscriptions>,
    lineage: Option<Arc<dyn LineageQuery>>,
) -> ChangesSchema {
    let mut builder = Schema::build(Query, EmptyMutation, SubscriptionRoot).data(subscriptions);
    if let Some(l) = lineage {
        builder = builder.data(LineageSource(l));
    }
    builder.finish()
}

fn refused(code: &'static str, message: impl Into<String>) -> async_graphql::Error {
    gql_error(Refusal {
        code,
        message: message.into(),
        retry_after_ms: None,
    })
}

pub struct Query;

#[Object]
impl Query {
    /// `ok` while the server runs (GraphQL needs at least one query).
    async fn health(&self) -> &'static str {
        "ok"
    }

    /// The lineage of a dataset (or job): every dataset and job within
    /// `maxDepth` edges (default 20), upstream and downstream, in
    /// Marquez's shape. Scope `lineage.read`; the token's tenant.
    async fn lineage(
        &self,
        ctx: &Context<'_>,
        dataset_id: String,
        max_depth: Option<i32>,
    ) -> async_graphql::Result<Json<Value>> {
        let principal =
            ctx.data_opt::<Principal>()
                .ok_or_else(|| match ctx.data_opt::<AuthRefusal>() {
                    Some(AuthRefusal(e)) => gql_error(e.clone().into()),
                    None => refused("unauthorized", "a bearer token is required"),
                })?;
        if !principal.scopes.iter().any(|s| s == SCOPE_LINEAGE_READ) {
            return Err(refused(
                "forbidden",
                format!("the token lacks the scope `{SCOPE_LINEAGE_READ}`"),
            ));
        }
        let source = ctx
            .data_opt::<LineageSource>()
            .ok_or_else(|| refused("unavailable", "lineage is not served here"))?;
        let depth = max_depth.unwrap_or(20);
        if !(0..=100).contains(&depth) {
            return Err(refused(
                "bad_request",
                format!("maxDepth: 0 to 100, got {depth}"),
            ));
        }
        source
            .0
            .lineage(&principal.tenant, &dataset_id, depth as usize)
            .map(Json)
            .map_err(|e| refused("not_found", e))
    }
}

/// One delivered event and the cursor after it.
#[derive(SimpleObject)]
pub struct Change {
    pub cursor: String,
    pub event: Json<Value>,
}

pub struct SubscriptionRoot;

fn gql_error(r: Refusal) -> async_graphql::Error {
    r.count();
    async_graphql::Error::new(r.message.clone()).extend_with(|_, e| {
        e.set("code", r.code);
        if let Some(ms) = r.retry_after_ms {
            e.set("retryAfterMs", ms);
        }
    })
}

type ChangeStream = std::pin::Pin<Box<dyn Stream<Item = async_graphql::Result<Change>> + Send>>;

async fn open(
    ctx: &Context<'_>,
    topic: String,
    filter: Option<Json<Value>>,
    cursor: Option<String>,
    from: Option<String>,
    extra: Option<(&str, &str)>,
) -> async_graphql::Result<ChangeStream> {
    let state = ctx.data::<Arc<Subscriptions>>()?;
    let principal = ctx.data_opt::<Principal>().ok_or_else(|| {
        gql_error(Refusal {
            code: "unauthorized",
            message: "a bearer token is required in connection_init".into(),
            retry_after_ms: None,
        })
    })?;
    if !principal.scopes.iter().any(|s| s == SCOPE_CHANGES_READ) {
        return Err(refused(
            "forbidden",
            format!("the token lacks the scope `{SCOPE_CHANGES_READ}`"),
        ));
    }
    let mut filter_json = filter.map(|j| j.0).unwrap_or(Value::Null);
    if let Some((k, v)) = extra {
        if filter_json.is_null() {
            filter_json = Value::Object(Default::default());
        }
        if let Value::Object(m) = &mut filter_json {
            m.insert(k.into(), v.into());
        }
    }
    let filter =
        Filter::parse(Some(&filter_json)).map_err(|e| gql_error(Refusal::bad_request(e)))?;
    let start = parse_start(from.as_deref()).map_err(gql_error)?;
    let permit = state
        .limits
        .admit(&principal.tenant, principal.tier)
        .map_err(|e| gql_error(e.into()))?;
    let sub = state
        .hub
        .subscribe(SubscribeRequest {
            topic,
            tenant: principal.tenant.clone(),
            cursor,
            start,
            filter,
        })
        .await
        .map_err(|e| gql_error(e.into()))?;
    Ok(Box::pin(futures::stream::unfold(
        Some((sub, permit, Ending::new("graphql"))),
        |state| async move {
            let (mut sub, permit, mut ending) = state?;
            match sub.next().await {
                Ok(d) => {
                    permit.paced().await;
                    let change = Change {
                        cursor: d.cursor,
                        event: Json(d.event.value().clone()),
                    };
                    Some((Ok(change), Some((sub, permit, ending))))
                }
                Err(e) => {
                    let refusal: Refusal = e.into();
                    ending.because(refusal.code);
                    Some((Err(gql_error(refusal)), None))
                }
            }
        },
    )))
}

#[Subscription]
impl SubscriptionRoot {
    /// Every event of `topic` this token's tenant may see, from `cursor`
    /// (or `from`: `earliest` | `latest`, the default).
    async fn changes(
        &self,
        ctx: &Context<'_>,
        topic: String,
        filter: Option<Json<Value>>,
        cursor: Option<String>,
        from: Option<String>,
    ) -> async_graphql::Result<ChangeStream> {
        open(ctx, topic, filter, cursor, from, None).await
    }

    /// Changes of the `entities` table on the entities changefeed.
    /// `tenantId` must be the token's tenant.
    async fn entity_changed(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
        filter: Option<Json<Value>>,
        cursor: Option<String>,
        from: Option<String>,
    ) -> async_graphql::Result<ChangeStream> {
        if let Some(p) = ctx.data_opt::<Principal>()
            && p.tenant != tenant_id.as_str()
        {
            return Err(gql_error(Refusal {
                code: "forbidden",
                message: format!(
                    "tenantId `{}` is not the token's tenant",
                    tenant_id.as_str()
                ),
                retry_after_ms: None,
            }));
        }
        open(
            ctx,
            ENTITIES_CHANGEFEED.to_string(),
            filter,
            cursor,
            from,
            Some(("table", "entities")),
        )
        .await
    }
}

/// The state of the `/graphql` route.
#[derive(Clone)]
pub struct GraphqlState {
    pub schema: ChangesSchema,
    pub subscriptions: Arc<Subscriptions>,
}

pub async fn upgrade(
    State(state): State<GraphqlState>,
    headers: HeaderMap,
    protocol: GraphQLProtocol,
    ws: WebSocketUpgrade,
) -> Response {
    let header_token =
        bearer(headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok())).map(str::to_string);
    let subscriptions = state.subscriptions.clone();
    sized(ws)
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| {
            GraphQLWebSocket::new(socket, state.schema.clone(), protocol)
                .on_connection_init(move |payload| async move {
                    let from_payload = |k: &str| payload.get(k).and_then(Value::as_str);
                    let token = from_payload("Authorization")
                        .or_else(|| from_payload("authorization"))
                        .and_then(|h| bearer(Some(h)))
                        .or_else(|| from_payload("token"))
                        .map(str::to_string)
                        .or(header_token);
                    let principal = verify_any(&subscriptions, token.as_deref())
                        .map_err(|e| gql_error(e.into()))?;
                    let mut data = Data::default();
                    data.insert(principal);
                    Ok(data)
                })
                .serve()
        })
}

/// Why an HTTP query's token was not accepted, for the resolvers to answer.
#[derive(Clone)]
struct AuthRefusal(crate::subscribe::auth::AuthError);

/// A token with either scope the schema serves (each resolver checks its own).
fn verify_any(
    subscriptions: &Subscriptions,
    token: Option<&str>,
) -> Result<Principal, crate::subscribe::auth::AuthError> {
    match subscriptions.auth.verify(token, SCOPE_CHANGES_READ) {
        Err(crate::subscribe::auth::AuthError::MissingScope(_)) => {
            subscriptions.auth.verify(token, SCOPE_LINEAGE_READ)
        }
        other => other,
    }
}

/// `POST /graphql`: a query (`lineage`, `health`) with the bearer token of
/// the `Authorization` header.
pub async fn http_query(
    State(state): State<GraphqlState>,
    headers: HeaderMap,
    request: async_graphql_axum::GraphQLRequest,
) -> async_graphql_axum::GraphQLResponse {
    let token = bearer(headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()));
    let mut request = request.into_inner();
    request = match verify_any(&state.subscriptions, token) {
        Ok(principal) => request.data(principal),
        Err(e) => request.data(AuthRefusal(e)),
    };
    state.schema.execute(request).await.into()
}
