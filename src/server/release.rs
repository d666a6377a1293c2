//! A lock whose grant never reaches its caller is released.
//!
//! LockSession attaches a [`GrantedLock`] to its answer. hyper drops the
//! answer's body without polling it to the end when the caller reset the
//! call (cancelled, deadline, gone) after the lock was granted but before
//! the answer went out; the lock would then be held, for a whole lease, by
//! nobody. So unless the body reached its trailers (the answer was handed to
//! the connection), dropping it releases the lock.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::Status;
use tonic::codegen::http;

use crate::sessions::GrantedLock;
use crate::state::State;

type Resp = http::Response<tonic::body::Body>;

pub fn layer(state: Arc<State>) -> ReleaseLayer {
    ReleaseLayer { state }
}

#[derive(Clone)]
pub struct ReleaseLayer {
    state: Arc<State>,
}

impl<S> tower::Layer<S> for ReleaseLayer {
    type Service = ReleaseUnlessSent<S>;

    fn layer(&self, inner: S) -> ReleaseUnlessSent<S> {
        ReleaseUnlessSent {
            inner,
            state: self.state.clone(),
        }
    }
}

#[derive(Clone)]
pub struct ReleaseUnlessSent<S> {
    inner: S,
    state: Arc<State>,
}

impl<S, B> tower::Service<http::Request<B>> for ReleaseUnlessSent<S>
where
    S: tower::Service<http::Request<B>, Response = Resp>,
    S::Future: Unpin,
{
    type Response = Resp;
    type Error = S::Error;
    type Future = Answer<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        Answer {
            inner: self.inner.call(req),
            state: Some(self.state.clone()),
        }
    }
}

/// The handler's answer; a LockSession grant in it gets its body guarded.
/// No allocation: the futures below are `Unpin`.
pub struct Answer<F> {
    inner: F,
    state: Option<Arc<State>>,
}

impl<F, E> Future for Answer<F>
where
    F: Future<Output = Result<Resp, E>> + Unpin,
{
    type Output = Result<Resp, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut resp = std::task::ready!(Pin::new(&mut self.inner).poll(cx))?;
        if let Some(lock) = resp.extensions_mut().remove::<GrantedLock>()
            && let Some(state) = self.state.take()
        {
            let guard = Some((state, lock));
            resp = resp.map(|inner| tonic::body::Body::new(Guarded { inner, guard }));
        }
        Poll::Ready(Ok(resp))
    }
}

/// The body of a LockSession answer, holding the grant until it is sent.
struct Guarded {
    inner: tonic::body::Body,
    guard: Option<(Arc<State>, GrantedLock)>,
}

impl http_body::Body for Guarded {
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

impl Drop for Guarded {
    fn drop(&mut self) {
        if let Some((state, lock)) = self.guard.take() {
            tokio::spawn(async move { state.sessions.release_unsent(lock).await });
        }
    }
}
