//! Caller authentication: bearer tokens mapped to namespaces.
//!
//! Off unless `--auth-tokens-file` is set; then every SessionService call must
//! carry `authorization: Bearer <token>` (the scheme in any case). A token
//! grants one or more namespaces; a caller works in the first, or picks
//! another with the `sessiond-namespace` metadata. The namespace is part of
//! every key, so two namespaces never see each other's sessions, whatever
//! the ids. The server reads both headers before admission
//! (`server/authenticate.rs`).
//!
//! The file holds one token a line, `<token> <namespace>[,<namespace>...]`;
//! blank lines and lines starting with `#` are skipped.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::Error;
use crate::session::printable;

/// Metadata key that selects one of the caller's namespaces.
pub const NAMESPACE_HEADER: &str = "sessiond-namespace";

/// Shortest token accepted: guessable tokens are refused at start-up.
const MIN_TOKEN_LEN: usize = 16;

#[derive(Debug)]
pub struct Auth {
    tokens: HashMap<String, Vec<Arc<str>>>,
}

impl Auth {
    /// Parses the tokens file's text; `Err` names the line to fix.
    pub fn parse(text: &str) -> Result<Auth, String> {
        let mut tokens = HashMap::new();
        for (n, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (token, namespaces) = line.split_once(char::is_whitespace).ok_or_else(|| {
                format!("line {n}: write it as `<token> <namespace>[,<namespace>...]`")
            })?;
            if token.len() < MIN_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!(
                    "line {n}: tokens must be at least {MIN_TOKEN_LEN} printable characters"
                ));
            }
            let namespaces: Vec<Arc<str>> = namespaces
                .trim()
                .split(',')
                .map(|ns| Arc::from(ns.trim()))
                .collect();
            if let Some(bad) = namespaces.iter().find(|ns| !valid_namespace(ns)) {
                return Err(format!(
                    "line {n}: namespace `{bad}` must be 1..=64 of [A-Za-z0-9._-]"
                ));
            }
            if tokens.insert(token.to_owned(), namespaces).is_some() {
                return Err(format!("line {n}: the token appears twice"));
            }
        }
        if tokens.is_empty() {
            return Err("the tokens file grants no token".into());
        }
        Ok(Auth { tokens })
    }

    /// Every namespace some token grants (a namespace granted by several
    /// tokens comes once per token).
    pub fn namespaces(&self) -> impl Iterator<Item = &Arc<str>> {
        self.tokens.values().flatten()
    }

    /// The namespace of a call with these `authorization` and
    /// `sessiond-namespace` values.
    pub fn namespace(
        &self,
        authorization: Option<&str>,
        wanted: Option<&str>,
    ) -> Result<&Arc<str>, Error> {
        choose(self.granted(authorization)?, wanted)
    }

    /// The namespaces the bearer token of an `authorization` value grants.
    /// The scheme is matched without regard to case (RFC 9110 §11.1).
    pub fn granted(&self, authorization: Option<&str>) -> Result<&[Arc<str>], Error> {
        let token = authorization
            .and_then(|v| v.trim_start().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| Error::Unauthenticated("send `authorization: Bearer <token>`".into()))?;
        self.tokens
            .get(token)
            .map(Vec::as_slice)
            .ok_or_else(|| Error::Unauthenticated("the bearer token is not known".into()))
    }
}

/// The namespace a call works in: `wanted` if the token grants it, else the
/// token's first.
pub fn choose<'a>(granted: &'a [Arc<str>], wanted: Option<&str>) -> Result<&'a Arc<str>, Error> {
    match wanted {
        None => granted
            .first()
            .ok_or_else(|| Error::PermissionDenied("the token grants no namespace".into())),
        Some(ns) => granted.iter().find(|g| ***g == *ns).ok_or_else(|| {
            Error::PermissionDenied(format!(
                "the token does not grant namespace `{}`",
                printable(ns)
            ))
        }),
    }
}

/// Whether `ns` can name a namespace: 1..=64 of `[A-Za-z0-9._-]`.
pub fn valid_namespace(ns: &str) -> bool {
    (1..=64).contains(&ns.len())
        && ns
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# bots\nAAAAAAAAAAAAAAAAAAAA  telegram\nBBBBBBBBBBBBBBBBBBBB slack,line\n";

    #[test]
    fn tokens_grant_namespaces() {
        let a = Auth::parse(FILE).unwrap();
        assert_eq!(
            &**a.namespace(Some("Bearer AAAAAAAAAAAAAAAAAAAA"), None)
                .unwrap(),
            "telegram"
        );
        assert_eq!(
            &**a.namespace(Some("Bearer BBBBBBBBBBBBBBBBBBBB"), Some("line"))
                .unwrap(),
            "line"
        );
        assert!(matches!(
            a.namespace(None, None),
            Err(Error::Unauthenticated(_))
        ));
        assert!(matches!(
            a.namespace(Some("Bearer nope"), None),
            Err(Error::Unauthenticated(_))
        ));
        assert!(matches!(
            a.namespace(Some("AAAAAAAAAAAAAAAAAAAA"), None),
            Err(Error::Unauthenticated(_))
        ));
        let denied = a.namespace(Some("Bearer AAAAAAAAAAAAAAAAAAAA"), Some("slack"));
        assert!(matches!(denied, Err(Error::PermissionDenied(_))));
    }

    #[test]
    fn the_scheme_is_matched_in_any_case() {
        let a = Auth::parse(FILE).unwrap();
        for v in [
            "bearer AAAAAAAAAAAAAAAAAAAA",
            "BEARER AAAAAAAAAAAAAAAAAAAA",
            "BeArEr   AAAAAAAAAAAAAAAAAAAA ",
        ] {
            assert_eq!(&**a.namespace(Some(v), None).unwrap(), "telegram", "{v:?}");
        }
        for v in [
            "Basic AAAAAAAAAAAAAAAAAAAA",
            "BearerAAAAAAAAAAAAAAAAAAAA",
            "Bearer",
            "Bearer ",
            "Bearer\tAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(
                matches!(a.namespace(Some(v), None), Err(Error::Unauthenticated(_))),
                "{v:?}"
            );
        }
    }

    #[test]
    fn every_granted_namespace_is_listed() {
        let a = Auth::parse(FILE).unwrap();
        let mut all: Vec<&str> = a.namespaces().map(|ns| &**ns).collect();
        all.sort_unstable();
        assert_eq!(all, ["line", "slack", "telegram"]);
    }

    #[test]
    fn bad_files_name_the_line() {
        assert!(Auth::parse("short ns").unwrap_err().contains("line 1"));
        assert!(
            Auth::parse("AAAAAAAAAAAAAAAAAAAA bad/ns")
                .unwrap_err()
                .contains("line 1")
        );
        assert!(
            Auth::parse("\nAAAAAAAAAAAAAAAAAAAA")
                .unwrap_err()
                .contains("line 2")
        );
        assert!(Auth::parse("# nothing\n").is_err());
    }
}
