//! tonic's codec refuses a request it cannot read before any handler sees
//! it, and answers in its own terms: INTERNAL for bytes that are not a
//! message of the method (or no message at all), OUT_OF_RANGE for a message
//! above the decoding limit. Both are the caller's doing, not a fault of the
//! server: logged as errors, they would let any caller fill the logs. This
//! layer, directly around the generated service, turns them into sessiond's
//! answers: INVALID_ARGUMENT with MALFORMED_REQUEST, or LIMIT_EXCEEDED with
//! `max_request_bytes`, each with its ErrorInfo.
//!
//! The codec's refusals are told apart by what sessiond's own answers always
//! carry: every error a handler returns has an ErrorInfo
//! (`grpc-status-details-bin`), the codec's never do.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::Status;
use tonic::codegen::http;

use crate::error::{Error, InvalidReason};

type Resp = http::Response<tonic::body::Body>;

/// `max_request_bytes`: the decoding limit the service was built with, for
/// the message of a refusal.
pub fn layer(max_request_bytes: usize) -> DecodingLayer {
    DecodingLayer { max_request_bytes }
}

#[derive(Clone, Copy)]
pub struct DecodingLayer {
    max_request_bytes: usize,
}

impl<S> tower::Layer<S> for DecodingLayer {
    type Service = Decoding<S>;

    fn layer(&self, inner: S) -> Decoding<S> {
        Decoding {
            inner,
            max_request_bytes: self.max_request_bytes,
        }
    }
}

#[derive(Clone)]
pub struct Decoding<S> {
    inner: S,
    max_request_bytes: usize,
}

impl<S, B> tower::Service<http::Request<B>> for Decoding<S>
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
            max_request_bytes: self.max_request_bytes,
        }
    }
}

/// The service's answer, with a refusal of the codec translated. No
/// allocation: the generated service's future is already boxed.
pub struct Answer<F> {
    inner: F,
    max_request_bytes: usize,
}

impl<F, E> Future for Answer<F>
where
    F: Future<Output = Result<Resp, E>> + Unpin,
{
    type Output = Result<Resp, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let limit = self.max_request_bytes;
        Pin::new(&mut self.inner)
            .poll(cx)
            .map_ok(|resp| translate(resp, limit))
    }
}

/// `resp` itself, unless it is a refusal of the codec.
fn translate(resp: Resp, max_request_bytes: usize) -> Resp {
    let headers = resp.headers();
    // Only a trailers-only answer carries its status in the headers; a
    // handler's error carries its ErrorInfo.
    let (Some(code), false) = (
        headers.get("grpc-status"),
        headers.contains_key("grpc-status-details-bin"),
    ) else {
        return resp;
    };
    let error = match code.as_bytes() {
        b"13" => {
            let why = Status::from_header_map(headers)
                .map(|s| s.message().to_owned())
                .unwrap_or_default();
            tracing::debug!(why, "malformed request refused");
            Error::invalid(
                InvalidReason::Request,
                format!("the request is not a well-formed message of its method: {why}"),
            )
        }
        b"11" => Error::LimitExceeded {
            limit: "max_request_bytes",
            message: format!(
                "the request is larger than {max_request_bytes} bytes, the most a call within the server's limits can need (max_session_bytes plus room for names and framing)"
            ),
        },
        _ => return resp,
    };
    Status::from(error).into_http()
}

#[cfg(test)]
mod tests {
    use tonic::Code;
    use tonic_types::StatusExt;

    use super::*;

    fn answered(status: Status) -> Status {
        let resp = translate(status.into_http(), 1234);
        Status::from_header_map(resp.headers()).unwrap()
    }

    #[test]
    fn codec_refusals_become_sessiond_answers() {
        let s = answered(Status::internal(
            "failed to decode Protobuf message: invalid wire type",
        ));
        let info = s.get_details_error_info().unwrap();
        assert_eq!(
            (s.code(), &*info.reason),
            (Code::InvalidArgument, "MALFORMED_REQUEST")
        );
        assert!(s.message().contains("invalid wire type"), "{}", s.message());
        let s = answered(Status::out_of_range("decoded message length too large"));
        let info = s.get_details_error_info().unwrap();
        assert_eq!(
            (s.code(), &*info.reason),
            (Code::InvalidArgument, "LIMIT_EXCEEDED")
        );
        assert_eq!(info.metadata["limit"], "max_request_bytes");
        assert!(s.message().contains("1234"), "{}", s.message());
    }

    #[test]
    fn sessiond_answers_pass_unchanged() {
        let own = Status::from(Error::Internal("a corrupt record".into()));
        let s = answered(own);
        assert_eq!(s.code(), Code::Internal);
        assert_eq!(s.get_details_error_info().unwrap().reason, "INTERNAL");
        let s = answered(Status::unimplemented("no such method"));
        assert_eq!(s.code(), Code::Unimplemented);
        let ok = translate(http::Response::new(tonic::body::Body::empty()), 1);
        assert!(ok.headers().is_empty());
    }
}
