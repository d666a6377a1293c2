//! The gRPC server: services, middleware, health, reflection and drain.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tonic::Status;
use tonic::codegen::http;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tracing::Instrument;

use crate::admin::AdminApi;
use crate::cache::Cache;
use crate::config::Config;
use crate::conn::Conn;
use crate::error::Error;
use crate::pb::admin_service_server::AdminServiceServer;
use crate::pb::session_service_server::SessionServiceServer;
use crate::service::SessionApi;
use crate::session::Limits;
use crate::state::State;
use crate::stats::{Method, Stats};
use crate::store::Store;

/// How often readiness follows the store's health.
const HEALTH_EVERY: Duration = Duration::from_secs(1);

/// Serves on an already bound `listener` until `shutdown` completes, then
/// drains: health turns NOT_SERVING, new calls are refused with UNAVAILABLE,
/// and in-flight calls get `shutdown_grace` to finish.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let stats = Arc::new(Stats::default());
    let (store, feed) = Store::open(&config, stats.clone()).await?;
    let cache = Cache::new(config.cache_max_bytes, config.cache_max_age, stats.clone());
    let limits = Limits::from_config(&config);
    let mut state = State::new(store, cache, limits, stats, feed.is_some());
    state.auth = config.auth().map_err(Error::Internal)?;
    let state = Arc::new(state);
    let feed_task = feed.map(|mut feed| {
        let state = state.clone();
        tokio::spawn(async move {
            while let Some(event) = feed.recv().await {
                state.on_feed(event).await;
            }
        })
    });

    let (health, health_service) = tonic_health::server::health_reporter();
    // Ready only once the store answers (this also sets the store's health
    // in GetStats from the start).
    let ready = state.store.ping().await.is_ok();
    if ready {
        health
            .set_serving::<SessionServiceServer<SessionApi>>()
            .await;
    } else {
        health
            .set_not_serving::<SessionServiceServer<SessionApi>>()
            .await;
    }
    let health_task = tokio::spawn(follow_store_health(state.clone(), health.clone(), ready));

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::Internal(format!("reflection: {e}")))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| Error::Internal(format!("reflection: {e}")))?;

    let metrics = match config.metrics_addr().map_err(Error::Internal)? {
        Some(addr) => Some(crate::metrics::serve(addr, state.clone()).await?),
        None => None,
    };
    let local = listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let router = Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .layer(ObserveLayer {
            state: state.clone(),
            permits: Arc::new(Semaphore::new(config.max_concurrent_calls)),
        })
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(SessionServiceServer::new(SessionApi::new(state.clone())))
        .add_service(AdminServiceServer::new(AdminApi::new(state.clone())));
    let mut server = tokio::spawn(
        router.serve_with_incoming_shutdown(
            // Settings on the builder apply only to listeners tonic binds itself.
            TcpIncoming::from(listener)
                .with_nodelay(Some(true))
                .with_keepalive(Some(Duration::from_secs(60)))
                .map_ok(Conn),
            async {
                let _ = stopped.await;
            },
        ),
    );
    tracing::info!(addr = %local, store = state.store.backend(), "sessiond serving");

    tokio::select! {
        result = &mut server => {
            metrics.iter().for_each(|t| t.abort());
            health_task.abort();
            feed_task.iter().for_each(|t| t.abort());
            feed_task.iter().for_each(|t| t.abort());
            return match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(Error::Internal(format!("server failed: {e}"))),
                Err(e) => Err(Error::Internal(format!("server task failed: {e}"))),
            };
        }
        () = shutdown => {}
    }

    tracing::info!(grace = ?config.shutdown_grace, "shutting down: draining in-flight calls");
    health_task.abort();
    feed_task.iter().for_each(|t| t.abort());
    state.start_draining();
    health
        .set_not_serving::<SessionServiceServer<SessionApi>>()
        .await;
    health
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    let _ = stop.send(());
    let drained = tokio::time::timeout(config.shutdown_grace, &mut server).await;
    metrics.iter().for_each(|t| t.abort());
    match drained {
        Ok(_) => tracing::info!("drained; bye"),
        Err(_) => {
            server.abort();
            tracing::warn!("grace period over; closing the remaining calls");
        }
    }
    Ok(())
}

/// Readiness follows the store: `sessiond.v1.SessionService` is NOT_SERVING
/// while the store cannot be reached.
async fn follow_store_health(
    state: Arc<State>,
    health: tonic_health::server::HealthReporter,
    mut serving: bool,
) {
    loop {
        tokio::time::sleep(HEALTH_EVERY).await;
        let ok = state.store.ping().await.is_ok();
        if ok != serving {
            serving = ok;
            let status = if ok {
                tonic_health::ServingStatus::Serving
            } else {
                tonic_health::ServingStatus::NotServing
            };
            tracing::warn!(store_reachable = ok, "store health changed");
            // Only the service's readiness follows the store; the overall ""
            // status stays SERVING (liveness), so an outage of Redis does not
            // get every instance restarted.
            health
                .set_service_status(crate::pb::session_service_server::SERVICE_NAME, status)
                .await;
        }
    }
}

/// The middleware every call passes through, in order: a request id (the
/// caller's `x-request-id` if it sent a sane one, else a fresh uuid) on a
/// tracing span and on the response; refusal while draining; load shedding
/// beyond `max_concurrent_calls`; per-RPC counts and latency.
#[derive(Clone)]
struct ObserveLayer {
    state: Arc<State>,
    permits: Arc<Semaphore>,
}

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            state: self.state.clone(),
            permits: self.permits.clone(),
        }
    }
}

#[derive(Clone)]
struct Observe<S> {
    inner: S,
    state: Arc<State>,
    permits: Arc<Semaphore>,
}

type Resp = http::Response<tonic::body::Body>;

impl<S, B> tower::Service<http::Request<B>> for Observe<S>
where
    S: tower::Service<http::Request<B>, Response = Resp> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Resp;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Resp, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // The clone that was polled ready serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let state = self.state.clone();
        let path = req.uri().path();
        let method = method_of(path);
        let request_id = request_id(&req);
        let name: std::borrow::Cow<'static, str> = match method {
            Some(m) => m.name().into(),
            None => path.to_owned().into(),
        };
        // A debug span: an enabled span costs every call a few per cent of
        // its CPU (allocated, formatted, entered on every poll), so at the
        // default level only the lines `log_call` writes name the call.
        let span = tracing::debug_span!("rpc", method = %name, request_id = %request_id);
        // Only SessionService calls are refused or shed: health, reflection
        // and GetStats keep answering, so probes see NOT_SERVING during a
        // drain and operators can look at an overloaded instance.
        let session_call = method.is_some_and(|m| m != Method::GetStats);
        // The permit is held for the whole call.
        let (refusal, permit) = if !session_call {
            (None, None)
        } else if state.is_draining() {
            (Some(Error::ShuttingDown), None)
        } else {
            match self.permits.clone().try_acquire_owned() {
                Ok(p) => (None, Some(p)),
                Err(_) => (Some(Error::Overloaded), None),
            }
        };
        if let Some(m) = method {
            state
                .stats
                .rpc(m)
                .started
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Box::pin(
            async move {
                let started = Instant::now();
                let mut resp = match refusal {
                    Some(e) => Status::from(e).into_http(),
                    None => {
                        let mut resp = inner.call(req).await?;
                        drop(permit);
                        if let Some(lock) = resp.extensions_mut().remove::<GrantedLock>() {
                            let guard = Some((state.clone(), lock));
                            resp = resp.map(|inner| {
                                tonic::body::Body::new(ReleaseUnlessSent { inner, guard })
                            });
                        }
                        resp
                    }
                };
                let code = resp
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok()?.parse::<i32>().ok())
                    .unwrap_or(0);
                if let Some(m) = method {
                    state.stats.rpc(m).finished(code, started.elapsed());
                }
                log_call(code, started.elapsed(), &name, &request_id);
                if let Ok(mut v) = http::HeaderValue::from_str(&request_id) {
                    // Never indexed: a value used once would only churn both
                    // ends' HPACK tables.
                    v.set_sensitive(true);
                    resp.headers_mut().insert("x-request-id", v);
                }
                Ok(resp)
            }
            .instrument(span),
        )
    }
}

/// One line per call: an error for internal failures, a warning for
/// UNAVAILABLE, otherwise debug. The line names the call itself, as the
/// `rpc` span is debug only.
fn log_call(code: i32, took: Duration, method: &str, request_id: &str) {
    let code = tonic::Code::from_i32(code);
    match code {
        tonic::Code::Internal | tonic::Code::Unknown | tonic::Code::DataLoss => {
            tracing::error!(method, request_id, ?code, ?took, "call failed")
        }
        tonic::Code::Unavailable => {
            tracing::warn!(method, request_id, ?code, ?took, "call failed")
        }
        _ => tracing::debug!(?code, ?took, "call done"),
    }
}

fn method_of(path: &str) -> Option<Method> {
    let name = path
        .strip_prefix("/sessiond.v1.SessionService/")
        .or_else(|| path.strip_prefix("/sessiond.v1.AdminService/"))?;
    Method::ALL.into_iter().find(|m| m.name() == name)
}

fn request_id<B>(req: &http::Request<B>) -> String {
    let given = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok());
    match given {
        Some(id)
            if !id.is_empty()
                && id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
        {
            id.to_owned()
        }
        _ => uuid::Uuid::new_v4().to_string(),
    }
}

/// A lock LockSession just granted, attached to its response so that the
/// lock is released if the response is never sent.
#[derive(Clone)]
pub struct GrantedLock {
    pub key: crate::session::SessionKey,
    pub token: String,
}

/// The body of a LockSession answer. hyper drops it without polling it to
/// the end when the caller reset the call (cancelled, deadline, gone) after
/// the lock was granted but before the answer went out; the lock would then
/// be held, for a whole lease, by nobody. So unless the body reached its
/// trailers (the answer was handed to the connection), dropping it releases
/// the lock.
struct ReleaseUnlessSent {
    inner: tonic::body::Body,
    guard: Option<(Arc<State>, GrantedLock)>,
}

impl http_body::Body for ReleaseUnlessSent {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => self.guard = None,
            Poll::Ready(None) => self.guard = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ReleaseUnlessSent {
    fn drop(&mut self) {
        if let Some((state, lock)) = self.guard.take() {
            state
                .stats
                .lock_waits_abandoned
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::spawn(async move {
                // LOCK_LOST here only means it already expired or was released.
                let _ = state.store.unlock(&lock.key, &lock.token).await;
            });
        }
    }
}
