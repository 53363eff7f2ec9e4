//! `conductor run`: the topologies against the configured backends.

use crate::backend::{Access, open_log, open_store};
use crate::cli::RunArgs;
use crate::error::CliError;
use crate::server::{self, AppState};
use crate::settings::Settings;
use crate::topologies;
use std::net::SocketAddr;
use std::sync::Arc;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// The address to serve on: `--listen`, else the config file's, else
/// [`DEFAULT_LISTEN`].
pub fn listen_addr(flag: Option<SocketAddr>, settings: &Settings) -> SocketAddr {
    flag.or(settings.listen).unwrap_or_else(|| {
        DEFAULT_LISTEN
            .parse()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080)))
    })
}

/// Starts the HTTP server, or says why it can't and how to fix it.
pub async fn serve_on(listen: SocketAddr, state: AppState) -> Result<SocketAddr, CliError> {
    server::serve(listen, state).await.map_err(|e| {
        CliError::new(
            format!("cannot listen on {listen}: {e}"),
            "pass --listen ADDR (e.g. 127.0.0.1:0 for any free port)",
        )
    })
}

pub async fn run(settings: &Settings, args: RunArgs) -> Result<(), CliError> {
    let mut configs = topologies::load(args.topologies.clone(), settings.topologies.clone())?;
    if !args.only.is_empty() {
        for name in &args.only {
            if !configs.iter().any(|c| &c.name == name) {
                return Err(CliError::usage(
                    format!(
                        "--only {name}: no such topology in {}",
                        topologies::source(args.topologies.as_ref(), settings.topologies.as_ref())
                    ),
                    "`conductor topology list` shows them",
                ));
            }
        }
        configs.retain(|c| args.only.contains(&c.name));
    }
    let metrics = server::metrics_handle();
    let log = open_log(settings, Access::Write).await?;
    let store = open_store(settings).await?;
    let names: Vec<String> = configs.iter().map(|c| c.name.clone()).collect();
    let subscriptions =
        server::subscriptions(settings, log.clone(), settings.jwt_secret.as_deref())?;
    let search = crate::search_service::start(
        settings,
        args.topologies.clone(),
        log.clone(),
        store.clone(),
    )
    .await?;
    let (running, reporter) =
        topologies::start_reported(settings, configs, log.clone(), store.clone()).await?;
    let listen = listen_addr(args.listen, settings);
    let state = AppState {
        topologies: Arc::new(running.statuses.clone()),
        metrics,
        subscriptions,
        search: Some(search),
        lineage: Some(crate::lineage_service::LineageService::start(
            log.clone(),
            settings.jwt_secret.as_deref(),
            true,
        )),
    };
    let bound = serve_on(listen, state).await?;
    eprintln!(
        "conductor: running {} on {} log, {} store; http://{bound}/v1/topologies (Ctrl-C stops)",
        names.join(", "),
        backend_name(settings),
        store_name(settings)
    );
    let caught_up = async {
        if args.exit_when_idle {
            running.caught_up().await
        } else {
            std::future::pending().await
        }
    };
    let stopped = tokio::select! {
        _ = wait_for_signal() => None,
        _ = caught_up => None,
        why = running.relay_stopped() => Some(why),
    };
    if let Some(why) = stopped {
        // Folding on would only fill the outbox: stop, and say why.
        eprintln!("conductor: stopping: {why}");
        // The stopped relay's error is the one above; the others' are no news.
        if let Err(e) = running.shutdown().await {
            tracing::debug!(error = %e, "shutting down after the relay stopped");
        }
        return Err(CliError::new(
            why,
            "fix the cause above and start conductor again: it resumes from what was committed",
        ));
    }
    eprintln!("conductor: stopping (finishing the current batch, relaying the outbox)...");
    crate::run_lineage::report_end(reporter.as_ref(), &running).await;
    running.shutdown().await
}

pub fn backend_name(s: &Settings) -> &'static str {
    match s.log {
        crate::cli::LogBackend::File => "file",
        crate::cli::LogBackend::Kafka => "kafka",
    }
}

pub fn store_name(s: &Settings) -> &'static str {
    match s.store {
        crate::cli::StoreBackend::Sqlite => "sqlite",
        crate::cli::StoreBackend::Postgres => "postgres",
    }
}

/// Ctrl-C or SIGTERM.
pub async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
