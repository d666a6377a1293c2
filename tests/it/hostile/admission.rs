//! Authentication before admission: a caller without a valid token is
//! refused from its headers, before it takes one of the
//! `--max-concurrent-calls` slots and before its body is read, so a flood of
//! such calls leaves the slots to callers with a token.

use std::time::Duration;

use tonic::Code;

use super::raw::{Open, Raw, answer_within};
use super::{CALM, Tokens, bearer, canary, strong};
use crate::on_both_backends;
use crate::support::Backend;

async fn calls_without_a_token_take_no_call_slot(b: Backend) {
    let tokens = Tokens::new();
    let s = tokens.server(b, &["--max-concurrent-calls", "4"]).await;
    // 32 calls, eight times the limit, without a token or with a wrong one:
    // headers only, their bodies never come.
    let mut raw = Raw::connect(s.addr).await;
    let mut open: Vec<Open> = Vec::new();
    for i in 0..32 {
        let headers: &[(&str, &[u8])] = match i % 2 {
            0 => &[],
            _ => &[("authorization", b"Bearer not-a-token-anyone-was-given")],
        };
        open.push(raw.open("GetSession", headers).await);
    }
    // Meanwhile the well-behaved caller is served, up to the limit at once.
    let c = s.client().await;
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let mut c = c.clone();
        calls.spawn(async move {
            for _ in 0..5 {
                canary(&mut c, Some(CALM)).await;
            }
            c.get_session(bearer(strong("nobody"), CALM))
                .await
                .unwrap_err()
                .code()
        });
    }
    while let Some(code) = calls.join_next().await {
        assert_eq!(code.unwrap(), Code::NotFound);
    }
    // Each flooding call was answered from its headers, its body unsent.
    for Open { response, body } in open {
        let answer = answer_within(response, Duration::from_secs(5))
            .await
            .expect("refused without its body");
        assert_eq!(
            (answer.code, answer.reason.as_str()),
            (Code::Unauthenticated, "UNAUTHENTICATED")
        );
        drop(body);
    }
}

on_both_backends!(calls_without_a_token_take_no_call_slot);
