//! The HTTP server of `conductor run` / `conductor demo`: admin endpoints,
//! metrics, and the subscription transports of `conductor_replay::server`
//! (`/v1/subscribe`, `/v1/changes`).
//!
//! - `GET /healthz`  — the process is up.
//! - `GET /readyz`   — 200 when every topology is running or paused, else 503.
//! - `GET /metrics`  — Prometheus text format.
//! - `GET /v1/topologies`, `GET /v1/topologies/{name}` — status JSON.
//! - `GET /v1/search?q=…&k=…&mode=…&alpha=…&cursor=…` — search the token's
//!   tenant's entities (scope `entity.search`; see `search_service`).
//! - `POST /api/v1/lineage` — an OpenLineage event for the token's tenant
//!   (scope `lineage.write`; see `lineage_service`).
//! - `GET /api/v1/lineage?nodeId=…&depth=…` — lineage in Marquez's shape
//!   (scope `lineage.read`).

use crate::error::CliError;
use crate::settings::Settings;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use conductor_engine::log::Log;
use conductor_engine::runtime::{StatusHandle, TopologyState};
use conductor_replay::server::Subscriptions;
use conductor_replay::subscribe::Hub;
use conductor_replay::subscribe::auth::Authenticator;
use conductor_replay::subscribe::limits::Limits;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

#[derive(Clone)]
pub struct AppState {
    pub topologies: Arc<Vec<StatusHandle>>,
    pub metrics: PrometheusHandle,
    pub subscriptions: Arc<Subscriptions>,
    /// `/v1/search`; `None`: not served here.
    pub search: Option<Arc<crate::search_service::SearchService>>,
    /// `POST /api/v1/lineage`; `None`: not served here.
    pub lineage: Option<Arc<crate::lineage_service::LineageService>>,
}

/// Shortest token secret accepted (HS256 wants at least the hash size).
const MIN_SECRET_BYTES: usize = 32;

/// The subscription service over `log`: cursors signed with the data dir's
/// cursor key, tokens checked against the configured secret (without one,
/// every subscribe attempt is answered with how to configure it).
pub fn subscriptions(
    settings: &Settings,
    log: Arc<dyn Log>,
    secret: Option<&str>,
) -> Result<Arc<Subscriptions>, CliError> {
    if let Some(s) = secret
        && s.len() < MIN_SECRET_BYTES
    {
        return Err(CliError::usage(
            format!(
                "the token secret is {} bytes; at least {MIN_SECRET_BYTES} are needed",
                s.len()
            ),
            "set CONDUCTOR_JWT_SECRET (or `jwt_secret` in the config file) to a longer random string",
        ));
    }
    let key = Arc::new(crate::backend::cursor_key(settings)?);
    Ok(Arc::new(Subscriptions {
        hub: Hub::new(log, key),
        auth: Authenticator::new(secret.map(str::as_bytes)),
        limits: Limits::new(settings.subscriptions.clone()),
    }))
}

/// Installs the Prometheus recorder once per process and returns its handle.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".into()),
                    &[
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                        10.0,
                    ],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Suffix("_events".into()),
                        &[1.0, 10.0, 100.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0],
                    )
                })
                .map(|b| b.install_recorder())
                .unwrap_or_else(|e| panic!("metric buckets are constants: {e}"));
            let handle =
                handle.unwrap_or_else(|e| panic!("a second metrics recorder was installed: {e}"));
            conductor_engine::metrics::describe();
            handle
        })
        .clone()
}

pub fn router(state: AppState) -> Router {
    let lineage = state
        .lineage
        .clone()
        .map(|l| l as std::sync::Arc<dyn conductor_replay::server::graphql::LineageQuery>);
    let subscriptions = conductor_replay::server::routes(state.subscriptions.clone(), lineage);
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(|State(s): State<AppState>| async move { s.metrics.render() }),
        )
        .route("/v1/topologies", get(list))
        .route("/v1/topologies/{name}", get(one))
        .route("/v1/search", get(search))
        .route(
            "/api/v1/lineage",
            axum::routing::post(post_lineage).get(get_lineage),
        )
        .with_state(state)
        .merge(subscriptions)
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let statuses: Vec<_> = s.topologies.iter().map(|t| t.snapshot()).collect();
    let ready = statuses
        .iter()
        .all(|t| matches!(t.state, TopologyState::Running | TopologyState::Paused));
    let body = serde_json::json!({
        "ready": ready,
        "topologies": statuses.iter().map(|t| serde_json::json!({"name": t.name, "state": t.state})).collect::<Vec<_>>(),
    });
    (
        if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        Json(body),
    )
}

async fn list(State(s): State<AppState>) -> impl IntoResponse {
    Json(
        s.topologies
            .iter()
            .map(|t| t.snapshot())
            .collect::<Vec<_>>(),
    )
}

async fn one(State(s): State<AppState>, Path(name): Path<String>) -> impl IntoResponse {
    match s.topologies.iter().find(|t| t.snapshot().name == name) {
        Some(t) => (
            StatusCode::OK,
            Json(serde_json::to_value(t.snapshot()).unwrap_or_default()),
        ),
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": format!("no topology named `{name}` runs here")})),
        ),
    }
}

async fn search(
    State(s): State<AppState>,
    headers: axum::http::HeaderMap,
    axum::extract::Query(params): axum::extract::Query<crate::search_service::SearchParams>,
) -> impl IntoResponse {
    let Some(service) = &s.search else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"error": "search is not served here"})),
        );
    };
    let authorization = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match service.answer(authorization, params).await {
        Ok(page) => (
            StatusCode::OK,
            Json(serde_json::to_value(page).unwrap_or_default()),
        ),
        Err(refusal) => (
            StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST),
            Json(serde_json::json!({"error": refusal.error})),
        ),
    }
}

async fn get_lineage(
    State(s): State<AppState>,
    headers: axum::http::HeaderMap,
    axum::extract::Query(params): axum::extract::Query<crate::lineage_service::LineageParams>,
) -> impl IntoResponse {
    let Some(service) = &s.lineage else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"error": "lineage is not served here"})),
        );
    };
    let authorization = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match service.lineage(authorization, params) {
        Ok(answer) => (StatusCode::OK, Json(answer)),
        Err(refusal) => (
            StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST),
            Json(serde_json::json!({"error": refusal.error})),
        ),
    }
}

async fn post_lineage(
    State(s): State<AppState>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> impl IntoResponse {
    let Some(service) = &s.lineage else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"error": "lineage is not accepted here"})),
        );
    };
    let authorization = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match service.accept(authorization, &body).await {
        Ok(accepted) => (
            StatusCode::CREATED,
            Json(serde_json::to_value(accepted).unwrap_or_default()),
        ),
        Err(refusal) => (
            StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST),
            Json(serde_json::json!({"error": refusal.error})),
        ),
    }
}

/// Binds and serves until the process ends; returns the bound address.
pub async fn serve(addr: SocketAddr, state: AppState) -> Result<SocketAddr, std::io::Error> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router(state)).await {
            tracing::error!(error = %error, "HTTP server stopped");
        }
    });
    Ok(bound)
}
