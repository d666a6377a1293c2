//! The door of SessionService: calls are refused while the server drains
//! (SHUTTING_DOWN) and shed at once beyond `--max-concurrent-calls`
//! (OVERLOADED) instead of queueing. Health, reflection and AdminService are
//! mounted beside it, not behind it, so probes see NOT_SERVING during a drain
//! and operators can look at an overloaded instance.
//!
//! The limit itself is tower's: `LoadShed` over `ConcurrencyLimit`, whose
//! permit is held until the handler's answer is ready. `Admission` sits
//! above both and turns their refusal into sessiond's status.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::Status;
use tonic::codegen::http;
use tonic::server::NamedService;
use tower::BoxError;
use tower::load_shed::error::Overloaded;

use crate::error::Error;
use crate::state::State;

type Resp = http::Response<tonic::body::Body>;

/// SessionService behind its admission: drain, shedding, the limit.
pub fn layer(state: Arc<State>) -> AdmissionLayer {
    AdmissionLayer { state }
}

#[derive(Clone)]
pub struct AdmissionLayer {
    state: Arc<State>,
}

impl<S> tower::Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Admission<S> {
        Admission {
            inner,
            state: self.state.clone(),
            not_ready: None,
        }
    }
}

#[derive(Clone)]
pub struct Admission<S> {
    inner: S,
    state: Arc<State>,
    /// Why the inner service failed to get ready, answered by the next call.
    not_ready: Option<String>,
}

/// Only SessionService is admitted through here, so the router finds it
/// under its own name.
impl<S> NamedService for Admission<S> {
    const NAME: &'static str = crate::pb::session_service_server::SERVICE_NAME;
}

impl<S, B> tower::Service<http::Request<B>> for Admission<S>
where
    S: tower::Service<http::Request<B>, Response = Resp>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = Resp;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Resp, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // `LoadShed` is always ready: it sheds in `call` instead of waiting.
        match self.inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => {
                self.not_ready = Some(e.into().to_string());
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if let Some(why) = self.not_ready.take() {
            return Box::pin(std::future::ready(Ok(Status::internal(why).into_http())));
        }
        if self.state.is_draining() {
            return Box::pin(std::future::ready(Ok(refusal(Error::ShuttingDown))));
        }
        let call = self.inner.call(req);
        Box::pin(async move {
            Ok(match call.await {
                Ok(resp) => resp,
                Err(e) => {
                    let e: BoxError = e.into();
                    if e.is::<Overloaded>() {
                        refusal(Error::Overloaded)
                    } else {
                        Status::internal(e.to_string()).into_http()
                    }
                }
            })
        })
    }
}

fn refusal(e: Error) -> Resp {
    Status::from(e).into_http()
}
