//! `conductor serve`: the subscription server alone.
//!
//! It serves `/graphql`, `/v1/subscribe`, `/v1/changes`, `/v1/search`,
//! `/metrics`, `/healthz` and `/readyz` off the log (and the store, for
//! search) and runs no topology, so it only
//! ever reads: on the file log it takes no writer lock and follows whichever
//! process appends (`conductor run`, `conductor produce`). Subscriptions
//! scale out by running several beside one `conductor run` (or, on Kafka,
//! anywhere that reaches the broker), each with the same cursor key and
//! token secret so that a cursor from one resumes on another.

use crate::backend::{Access, open_log, open_store};
use crate::cli::ServeArgs;
use crate::commands::run::{backend_name, listen_addr, serve_on, wait_for_signal};
use crate::error::CliError;
use crate::server::{self, AppState};
use crate::settings::Settings;
use std::sync::Arc;

pub async fn run(settings: &Settings, args: ServeArgs) -> Result<(), CliError> {
    let metrics = server::metrics_handle();
    let log = open_log(settings, Access::Read).await?;
    if settings.jwt_secret.is_none() {
        eprintln!(
            "note: no token secret is configured, so every subscribe attempt is refused; set CONDUCTOR_JWT_SECRET (32+ bytes) or `jwt_secret` in the config file"
        );
    }
    let subscriptions =
        server::subscriptions(settings, log.clone(), settings.jwt_secret.as_deref())?;
    let store = open_store(settings).await?;
    let search =
        crate::search_service::start(settings, args.topologies.clone(), log.clone(), store).await?;
    let listen = listen_addr(args.listen, settings);
    let state = AppState {
        topologies: Arc::new(Vec::new()),
        metrics,
        subscriptions,
        search: Some(search),
        // `serve` reads the log beside a `run` that writes it: lineage is
        // posted to `run`, read here.
        lineage: Some(crate::lineage_service::LineageService::start(
            log.clone(),
            settings.jwt_secret.as_deref(),
            false,
        )),
    };
    let bound = serve_on(listen, state).await?;
    eprintln!(
        "conductor: serving subscriptions off the {} log on http://{bound}/v1/changes, ws://{bound}/v1/subscribe and ws://{bound}/graphql (Ctrl-C stops)",
        backend_name(settings)
    );
    wait_for_signal().await;
    Ok(())
}
