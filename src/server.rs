//! The gRPC server: the services and the layers in front of them, health,
//! reflection, the background tasks, and the drain.
//!
//! A call passes, top-down: `observe` (request id, counts, latency, the log
//! line; every service), then for SessionService `authenticate` (the
//! caller's namespace from its headers, before anything else is spent on
//! it), `admission` (drain, the namespace's share and the instance's limit),
//! `release` (a grant whose answer is never sent is released) and `decoding`
//! (the codec's refusals as sessiond's answers), then the handler in
//! `service.rs`. SessionService reads requests of at most
//! `Limits::max_request_bytes`, derived from `--max-session-bytes`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower::ServiceBuilder;

use crate::admin::AdminApi;
use crate::cache::Cache;
use crate::config::{Config, Settings};
use crate::conn::{Connections, MAX_LOCAL_ERROR_RESETS, MAX_PENDING_ACCEPT_RESETS};
use crate::pb::admin_service_server::AdminServiceServer;
use crate::pb::session_service_server::{SERVICE_NAME, SessionServiceServer};
use crate::service::SessionApi;
use crate::sessions::Sessions;
use crate::state::State;
use crate::stats::Stats;
use crate::store::{Feed, Store};

mod admission;
mod authenticate;
mod decoding;
mod observe;
mod release;

use crate::shares::ShareLimits;

/// How often readiness follows the store's health.
const HEALTH_EVERY: Duration = Duration::from_secs(1);

/// Why the server could not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("bad configuration: {0}")]
    Config(String),
    #[error("cannot open the store")]
    Store(#[source] crate::error::Error),
    #[error("cannot listen for metrics on {addr}")]
    Metrics {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen for health checks on {addr}")]
    Health {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the reflection service")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("the server failed")]
    Serve(#[from] tonic::transport::Error),
    #[error("the server task failed")]
    Task(#[from] tokio::task::JoinError),
}

/// Validates `config`, then serves as [`serve`] does.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), StartError> {
    let settings = Settings::new(config).map_err(StartError::Config)?;
    serve(settings, listener, shutdown).await
}

/// Serves on an already bound `listener` until `shutdown` completes, then
/// drains: health turns NOT_SERVING, new calls are refused with UNAVAILABLE,
/// and in-flight calls get `shutdown_grace` to finish.
pub async fn serve(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), StartError> {
    let stats = Arc::new(Stats::default());
    let (store, feed) = Store::open(&settings.store, settings.limits.clone(), stats.clone())
        .await
        .map_err(StartError::Store)?;
    let cache = Cache::new(
        settings.cache_max_bytes,
        settings.cache_max_age,
        stats.clone(),
    );
    let coverage = store.coverage();
    let sessions =
        Sessions::new(store, cache, stats.clone(), coverage).with_watch_limits(settings.watch);
    let shares = ShareLimits {
        calls: settings.max_concurrent_calls,
        calls_per_namespace: settings.max_calls_per_namespace,
        waiters_per_namespace: settings.max_waiters_per_namespace,
        waiters_per_session: settings.max_waiters_per_session,
    };
    let max_request_bytes = settings.limits.max_request_bytes();
    let tls = settings.tls.map(Arc::new);
    let mut state = State::new(sessions, settings.auth, settings.limits, stats).with_shares(shares);
    // On Redis the store names the instance: its lock tokens begin with the
    // id, so InspectSession can say which instance granted a lock.
    if let Some(id) = state.sessions.store().instance_id() {
        state.instance_id = id.to_owned();
    }
    let state = Arc::new(state);

    // The background tasks, owned here: dropping a set (any return from
    // here) ends its tasks. The feed and readiness end when the drain
    // begins; `/metrics` keeps answering through the drain.
    let mut tasks = JoinSet::new();
    let mut metrics = JoinSet::new();
    if let Some(feed) = feed {
        tasks.spawn(follow_feed(state.clone(), feed));
    }
    if state.auth.is_some() {
        let state = state.clone();
        tasks.spawn(async move {
            if let Some(auth) = &state.auth {
                auth.follow().await;
            }
        });
    }
    let (health, health_service) = tonic_health::server::health_reporter();
    // Ready only once the store answers (this also sets the store's health
    // in GetStats from the start).
    let ready = state.sessions.store().ping().await.is_ok();
    set_readiness(&health, ready).await;
    tasks.spawn(follow_store_health(state.clone(), health.clone(), ready));
    if let Some(addr) = settings.metrics_addr {
        let metrics_tls = tls.clone().filter(|_| settings.metrics_tls).map(|tls| {
            let conns = crate::conn::Connections::new(settings.connections.without_calls());
            (tls, conns)
        });
        let endpoint = crate::metrics::bind(addr, state.clone(), metrics_tls)
            .await
            .map_err(|source| StartError::Metrics { addr, source })?;
        metrics.spawn(endpoint);
    }

    if let Some(addr) = settings.health_addr {
        // Probes that cannot speak TLS ask here; like `/metrics`, it keeps
        // answering (NOT_SERVING) through the drain.
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Health { addr, source })?;
        let health_only = Server::builder()
            .add_service(health_service.clone())
            .serve_with_incoming(TcpIncoming::from(listener));
        metrics.spawn(async move {
            if let Err(e) = health_only.await {
                tracing::error!(error = %e, "health listener failed");
            }
        });
    }

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let session_service = ServiceBuilder::new()
        .layer(authenticate::layer(state.clone()))
        .layer(admission::layer(state.clone()))
        .layer(release::layer(state.clone()))
        .layer(decoding::layer(max_request_bytes))
        .service(
            SessionServiceServer::new(SessionApi::new(state.clone()))
                .max_decoding_message_size(max_request_bytes),
        );

    let local = listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let conns = settings.connections.clone();
    let connections = Connections::new(conns.clone());
    let mut builder = Server::builder()
        .max_concurrent_streams(conns.max_streams)
        .http2_max_header_list_size(conns.max_header_list_bytes)
        .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_ACCEPT_RESETS))
        .http2_max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
        .http2_keepalive_interval(conns.keepalive_interval)
        .http2_keepalive_timeout(Some(conns.keepalive_timeout));
    if let Some(age) = conns.max_age {
        // No grace here: with one, tonic skips the GOAWAY and only cuts the
        // connection at age + grace. `Conn` does the cutting instead.
        builder = builder.max_connection_age(age);
    }
    let router = builder
        .layer(observe::layer(state.stats.clone()))
        .layer(connections.layer())
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(session_service)
        .add_service(AdminServiceServer::new(AdminApi::new(state.clone())));
    let mut server = tokio::spawn(
        router.serve_with_incoming_shutdown(
            // Settings on the builder apply only to listeners tonic binds itself.
            // With TLS, sessiond terminates it itself (see tls.rs); beyond
            // --max-connections a connection is closed as it is accepted.
            crate::tls::incoming(
                TcpIncoming::from(listener)
                    .with_nodelay(Some(true))
                    .with_keepalive(Some(Duration::from_secs(60)))
                    .try_filter_map(move |tcp| std::future::ready(Ok(connections.admit(tcp)))),
                tls.clone(),
                crate::tls::Protocol::Grpc,
            ),
            async {
                let _ = stopped.await;
            },
        ),
    );
    tracing::info!(addr = %local, store = state.sessions.store().backend(), tls = tls.is_some(), "sessiond serving");

    tokio::select! {
        result = &mut server => return Ok(result??),
        () = shutdown => {}
    }

    tracing::info!(grace = ?settings.shutdown_grace, "shutting down: draining in-flight calls");
    tasks.abort_all();
    state.start_draining();
    state.sessions.stop_watching();
    set_readiness(&health, false).await;
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    let _ = stop.send(());
    match tokio::time::timeout(settings.shutdown_grace, &mut server).await {
        Ok(_) => tracing::info!("drained; bye"),
        Err(_) => {
            server.abort();
            tracing::warn!("grace period over; closing the remaining calls");
        }
    }
    metrics.abort_all();
    Ok(())
}

/// Applies the invalidation feed of a shared store to the cache.
async fn follow_feed(state: Arc<State>, mut feed: Feed) {
    while let Some(event) = feed.recv().await {
        state.sessions.on_feed(event).await;
    }
}

async fn set_readiness(health: &HealthReporter, serving: bool) {
    let status = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    health.set_service_status(SERVICE_NAME, status).await;
}

/// Readiness follows the store: `sessiond.v1.SessionService` is NOT_SERVING
/// while the store cannot be reached.
async fn follow_store_health(state: Arc<State>, health: HealthReporter, mut serving: bool) {
    loop {
        tokio::time::sleep(HEALTH_EVERY).await;
        let ok = state.sessions.store().ping().await.is_ok();
        if ok != serving {
            serving = ok;
            tracing::warn!(store_reachable = ok, "store health changed");
            // Only the service's readiness follows the store; the overall ""
            // status stays SERVING (liveness), so an outage of Redis does not
            // get every instance restarted.
            set_readiness(&health, ok).await;
        }
    }
}
