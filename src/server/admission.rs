//! The door of SessionService, after `authenticate`: calls are refused while
//! the server drains (SHUTTING_DOWN), and beyond their namespace's share or
//! the instance's `--max-concurrent-calls` they are refused at once
//! (OVERLOADED) instead of queueing. Health, reflection and AdminService are
//! mounted beside it, not behind it, so probes see NOT_SERVING during a drain
//! and operators can look at an overloaded instance.
//!
//! The counts are `Shares` (see `shares.rs`), not tower's `ConcurrencyLimit`:
//! a LockSession that queues for a lock hands its working slot back while it
//! waits, which an opaque semaphore permit held by the response future
//! cannot do. A call counts until its answer is ready (or it is dropped).

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::Either;
use tonic::Status;
use tonic::codegen::http;

use crate::error::Error;
use crate::shares::{Admitted, Caller};
use crate::state::State;

type Resp = http::Response<tonic::body::Body>;

/// SessionService behind its admission: drain, shares, the limit.
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
        }
    }
}

#[derive(Clone)]
pub struct Admission<S> {
    inner: S,
    state: Arc<State>,
}

impl<S, B> tower::Service<http::Request<B>> for Admission<S>
where
    S: tower::Service<http::Request<B>, Response = Resp, Error = Infallible>,
    S::Future: Unpin,
{
    type Response = Resp;
    type Error = Infallible;
    type Future = Either<Counted<S::Future>, Ready<Result<Resp, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if self.state.is_draining() {
            return refusal(Error::ShuttingDown);
        }
        let share = match self.state.share_of(req.extensions().get::<Caller>()) {
            Ok(share) => share,
            Err(e) => return refusal(e),
        };
        let admitted = match self.state.shares.admit(share) {
            Ok(admitted) => admitted,
            Err(e) => return refusal(e),
        };
        Either::Left(Counted {
            inner: self.inner.call(req),
            admitted: Some(admitted),
        })
    }
}

/// A call admitted: it counts against its share until its answer is ready
/// or the call is dropped. No allocation: the futures below are `Unpin`.
pub struct Counted<F> {
    inner: F,
    admitted: Option<Admitted>,
}

impl<F> Future for Counted<F>
where
    F: Future<Output = Result<Resp, Infallible>> + Unpin,
{
    type Output = Result<Resp, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let answer = std::task::ready!(Pin::new(&mut self.inner).poll(cx));
        self.admitted = None;
        Poll::Ready(answer)
    }
}

fn refusal<F>(e: Error) -> Either<F, Ready<Result<Resp, Infallible>>> {
    Either::Right(ready(Ok(Status::from(e).into_http())))
}
