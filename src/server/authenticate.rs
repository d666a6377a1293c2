//! Who a SessionService call is for, from its headers alone, before
//! admission: a caller without a valid bearer token is refused
//! (UNAUTHENTICATED) before it takes a call slot and before its body is
//! read, so callers without a token cannot use up `--max-concurrent-calls`.
//!
//! The call's namespace (from the token and `sessiond-namespace`, or
//! `default` with authentication off) travels on as a [`Caller`] in the
//! request's extensions: admission counts it against its namespace's share,
//! and the handler puts it in the session's key.

use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::Either;
use tonic::Status;
use tonic::codegen::http;
use tonic::codegen::http::HeaderMap;
use tonic::server::NamedService;

use crate::auth::{self, NAMESPACE_HEADER};
use crate::error::{Error, InvalidReason, Result};
use crate::shares::{Caller, Share};
use crate::state::State;

type Resp = http::Response<tonic::body::Body>;

pub fn layer(state: Arc<State>) -> AuthenticateLayer {
    AuthenticateLayer { state }
}

#[derive(Clone)]
pub struct AuthenticateLayer {
    state: Arc<State>,
}

impl<S> tower::Layer<S> for AuthenticateLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Authenticate<S> {
        Authenticate {
            inner,
            state: self.state.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authenticate<S> {
    inner: S,
    state: Arc<State>,
}

/// The outermost of SessionService's layers: the router finds the service
/// under its own name.
impl<S> NamedService for Authenticate<S> {
    const NAME: &'static str = crate::pb::session_service_server::SERVICE_NAME;
}

impl<S, B> tower::Service<http::Request<B>> for Authenticate<S>
where
    S: tower::Service<http::Request<B>, Response = Resp>,
{
    type Response = Resp;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Resp, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        match caller(&self.state, req.headers()) {
            Ok(share) => {
                if let Some(share) = share {
                    if crate::telemetry::exporting() {
                        // On the call's span (`observe`), which says
                        // `default` until here.
                        tracing::Span::current().record("sessiond.namespace", &*share.namespace);
                    }
                    req.extensions_mut().insert(Caller(share));
                }
                Either::Left(self.inner.call(req))
            }
            Err(e) => Either::Right(ready(Ok(Status::from(e).into_http()))),
        }
    }
}

/// The share of the namespace a call with these headers works in; `None`
/// with authentication off, where every caller works in `default`
/// (`State::share_of`) and nothing needs carrying: no extension inserted,
/// no reference count touched on every call.
fn caller(state: &State, headers: &HeaderMap) -> Result<Option<Arc<Share>>> {
    let wanted = namespace_asked(headers);
    let Some(auth) = &state.auth else {
        // A well-formed namespace asked for is ignored as it always was, a
        // malformed one is refused.
        wanted?;
        return Ok(None);
    };
    let granted = auth.granted(authorization(headers)?)?;
    let namespace = auth::choose(&granted, wanted?)?;
    Ok(Some(state.shares.of(namespace)))
}

/// The one `authorization` value, if any; a value that is not visible ASCII
/// counts as none.
fn authorization(headers: &HeaderMap) -> Result<Option<&str>> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(Error::Unauthenticated(
            "send one `authorization: Bearer <token>`, not several".into(),
        ));
    }
    Ok(first.and_then(|v| v.to_str().ok()))
}

/// The namespace asked for in `sessiond-namespace`: at most once, and a
/// well-formed namespace name (1..=64 of `[A-Za-z0-9._-]`), or the call is
/// refused rather than silently moved to another namespace.
fn namespace_asked(headers: &HeaderMap) -> Result<Option<&str>> {
    let mut values = headers.get_all(NAMESPACE_HEADER).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Error::invalid(
            InvalidReason::Namespace,
            "send `sessiond-namespace` at most once",
        ));
    }
    match first.to_str() {
        Ok(ns) if auth::valid_namespace(ns) => Ok(Some(ns)),
        _ => Err(Error::invalid(
            InvalidReason::Namespace,
            "`sessiond-namespace` must be 1..=64 of [A-Za-z0-9._-]",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            let name = http::HeaderName::from_bytes(name.as_bytes()).unwrap();
            h.append(name, http::HeaderValue::from_bytes(value).unwrap());
        }
        h
    }

    fn namespace_reason(h: &HeaderMap) -> Option<InvalidReason> {
        match namespace_asked(h) {
            Ok(_) => None,
            Err(Error::InvalidArgument { reason, .. }) => Some(reason),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn the_namespace_header_is_one_well_formed_name() {
        assert_eq!(namespace_asked(&headers(&[])).unwrap(), None);
        let h = headers(&[(NAMESPACE_HEADER, b"slack")]);
        assert_eq!(namespace_asked(&h).unwrap(), Some("slack"));
        for bad in [
            &[
                (NAMESPACE_HEADER, &b"slack"[..]),
                (NAMESPACE_HEADER, b"line"),
            ][..],
            &[(NAMESPACE_HEADER, "sl\u{e4}ck".as_bytes())],
            &[(NAMESPACE_HEADER, b"sl\xe4ck")],
            &[(NAMESPACE_HEADER, b"")],
            &[(NAMESPACE_HEADER, b"a/b")],
            &[(NAMESPACE_HEADER, "x".repeat(65).as_bytes())],
        ] {
            assert_eq!(
                namespace_reason(&headers(bad)),
                Some(InvalidReason::Namespace),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn one_authorization_header_is_read() {
        assert_eq!(authorization(&headers(&[])).unwrap(), None);
        let one = headers(&[("authorization", b"Bearer x")]);
        assert_eq!(authorization(&one).unwrap(), Some("Bearer x"));
        let two = headers(&[
            ("authorization", b"Bearer x"),
            ("authorization", b"Bearer y"),
        ]);
        assert!(matches!(
            authorization(&two),
            Err(Error::Unauthenticated(_))
        ));
        let binary = headers(&[("authorization", b"Bearer \xff")]);
        assert_eq!(authorization(&binary).unwrap(), None);
    }
}
