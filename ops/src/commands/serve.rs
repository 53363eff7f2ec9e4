//! `conductor serve`: the subscription server alone.
//!
//! It serves `/graphql`, `/v1/subscribe`, `/v1/changes`, `/metrics`,
//! `/healthz` and `/readyz` off the log and runs no topology, so it only
//! ever reads: on the file log it takes no writer lock and follows whichever
//! process appends (`conductor run`, `conductor produce`). Subscriptions
//! scale out by running several beside one `conductor run` (or, on Kafka,
//! anywhere that reaches the broker), each with the same cursor key and
//! token secret so that a cursor from one resumes on another.

use crate::backend::{Access, open_log};
use crate::cli::ServeArgs;
use crate::commands::run::{DEFAULT_LISTEN, backend_name, wait_for_signal};
use crate::error::CliError;
use crate::server::{self, AppState};
use crate::settings::Settings;
use std::net::SocketAddr;
use std::sync::Arc;

pub async fn run(settings: &Settings, args: ServeArgs) -> Result<(), CliError> {
    let metrics = server::metrics_handle();
    let log = open_log(settings, Access::Read).await?;
    if settings.jwt_secret.is_none() {
        eprintln!(
            "note: no token secret is configured, so every subscribe attempt is refused; set CONDUCTOR_JWT_SECRET (32+ bytes) or `jwt_secret` in the config file"
        );
    }
    let subscriptions = server::subscriptions(settings, log, settings.jwt_secret.as_deref())?;
    let listen = args.listen.or(settings.listen).unwrap_or_else(|| {
        DEFAULT_LISTEN
            .parse()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080)))
    });
    let state = AppState {
        topologies: Arc::new(Vec::new()),
        metrics,
        subscriptions,
    };
    let bound = server::serve(listen, state).await.map_err(|e| {
        CliError::new(
            format!("cannot listen on {listen}: {e}"),
            "pass --listen ADDR (e.g. 127.0.0.1:0 for any free port)",
        )
    })?;
    eprintln!(
        "conductor: serving subscriptions off the {} log on http://{bound}/v1/changes, ws://{bound}/v1/subscribe and ws://{bound}/graphql (Ctrl-C stops)",
        backend_name(settings)
    );
    wait_for_signal().await;
    Ok(())
}
