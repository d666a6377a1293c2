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
//! The file holds one token a line, `<token> <namespace>[,<namespace>...]`,
//! optionally followed by the word `admin`: the admin grant, which lets the
//! token make AdminService's operator calls (InspectSession, ForceUnlock,
//! ListSessions, PurgeSessions) in the namespaces it grants. Blank lines and
//! lines starting with `#` are skipped. A file of the earlier syntax (no
//! third word) means the same as before: no token is an admin.
//!
//! Tokens are kept only as their SHA-256 digests: a memory dump or a core
//! file shows no token, and a call's token is found by the digest of what it
//! sent (a lookup whose timing tells nothing about any token's text).
//!
//! The file is read again on SIGHUP and every `--reload-interval`, and a
//! changed file replaces the whole set at once: revoking a token takes
//! effect for the next call. A file that does not parse keeps the set in
//! force, and the reason is logged.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use ring::digest::{SHA256, digest};

use crate::error::Error;
use crate::session::printable;

/// Metadata key that selects one of the caller's namespaces.
pub const NAMESPACE_HEADER: &str = "sessiond-namespace";

/// Shortest token accepted: guessable tokens are refused at start-up.
const MIN_TOKEN_LEN: usize = 16;

/// The SHA-256 digest of a token, or of the whole file's text.
type Digest = [u8; 32];

/// The namespaces one token grants, its first the default.
pub type Granted = Arc<[Arc<str>]>;

/// What one token grants.
#[derive(Debug, Clone)]
struct Grant {
    namespaces: Granted,
    /// The operator calls of AdminService, in those namespaces.
    admin: bool,
}

#[derive(Debug)]
pub struct Auth {
    /// Where the tokens come from: `None` for a set parsed from text.
    file: Option<(PathBuf, Duration)>,
    /// The set in force, and the digest of the text it was parsed from.
    current: RwLock<(Digest, Arc<HashMap<Digest, Grant>>)>,
}

fn sha256(bytes: &[u8]) -> Digest {
    let mut out = [0; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

impl Auth {
    /// Parses the tokens file's text; `Err` names the line to fix.
    pub fn parse(text: &str) -> Result<Auth, String> {
        Ok(Auth {
            file: None,
            current: RwLock::new((sha256(text.as_bytes()), Arc::new(parse(text)?))),
        })
    }

    /// Reads and parses the tokens file at `path`, to be read again every
    /// `every` by [`Auth::follow`].
    pub fn load(path: PathBuf, every: Duration) -> Result<Auth, String> {
        let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
        let mut auth = Auth::parse(&text)?;
        auth.file = Some((path, every));
        Ok(auth)
    }

    /// Reads the file again and, if its text changed and parses, swaps in
    /// the new set. `Ok(Some(n))`: a set of `n` tokens is now in force.
    pub fn reload(&self) -> Result<Option<usize>, String> {
        let Some((path, _)) = &self.file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        let seen = sha256(text.as_bytes());
        if self.current.read().0 == seen {
            return Ok(None);
        }
        let tokens = parse(&text)?;
        let n = tokens.len();
        *self.current.write() = (seen, Arc::new(tokens));
        Ok(Some(n))
    }

    /// Reloads the file on SIGHUP and when it changes, for as long as the
    /// future is polled (nothing to do for a set parsed from text).
    pub async fn follow(&self) {
        let Some((path, every)) = &self.file else {
            return;
        };
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "no SIGHUP handler: the tokens file is only polled");
                None
            }
        };
        loop {
            let signalled = tokio::select! {
                () = tokio::time::sleep(*every) => false,
                Some(()) = async {
                    match hangup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => true,
            };
            match self.reload() {
                Ok(Some(tokens)) => {
                    tracing::info!(file = %path.display(), tokens, "tokens file reloaded");
                }
                Ok(None) if signalled => {
                    tracing::info!(file = %path.display(), "SIGHUP: the tokens file is unchanged");
                }
                Ok(None) => {}
                Err(e) => tracing::error!(
                    file = %path.display(),
                    error = %e,
                    "tokens file not reloaded; the tokens in force stay"
                ),
            }
        }
    }

    /// Every namespace some token grants (a namespace granted by several
    /// tokens comes once per token).
    pub fn namespaces(&self) -> Vec<Arc<str>> {
        let tokens = self.current.read().1.clone();
        tokens
            .values()
            .flat_map(|g| g.namespaces.iter().cloned())
            .collect()
    }

    /// The namespace of a call with these `authorization` and
    /// `sessiond-namespace` values.
    pub fn namespace(
        &self,
        authorization: Option<&str>,
        wanted: Option<&str>,
    ) -> Result<Arc<str>, Error> {
        choose(&self.granted(authorization)?, wanted).cloned()
    }

    /// The namespaces the bearer token of an `authorization` value grants.
    /// The scheme is matched without regard to case (RFC 9110 §11.1).
    pub fn granted(&self, authorization: Option<&str>) -> Result<Granted, Error> {
        Ok(self.grant(authorization)?.namespaces)
    }

    /// The namespace an operator call with these `authorization` and
    /// wanted namespace may act in: the token must carry the admin grant
    /// (ADMIN_DENIED) and grant the namespace (NAMESPACE_DENIED).
    pub fn admin_namespace(
        &self,
        authorization: Option<&str>,
        wanted: Option<&str>,
    ) -> Result<Arc<str>, Error> {
        let grant = self.grant(authorization)?;
        if !grant.admin {
            return Err(Error::AdminDenied(
                "the token has no admin grant: end its line in the tokens file with ` admin`"
                    .into(),
            ));
        }
        choose(&grant.namespaces, wanted).cloned()
    }

    fn grant(&self, authorization: Option<&str>) -> Result<Grant, Error> {
        let token = authorization
            .and_then(|v| v.trim_start().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| Error::Unauthenticated("send `authorization: Bearer <token>`".into()))?;
        let tokens = self.current.read().1.clone();
        tokens
            .get(&sha256(token.as_bytes()))
            .cloned()
            .ok_or_else(|| Error::Unauthenticated("the bearer token is not known".into()))
    }
}

/// The tokens of a file's text, by digest; `Err` names the line to fix.
fn parse(text: &str) -> Result<HashMap<Digest, Grant>, String> {
    let mut tokens = HashMap::new();
    for (n, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (token, namespaces) = line.split_once(char::is_whitespace).ok_or_else(|| {
            format!("line {n}: write it as `<token> <namespace>[,<namespace>...] [admin]`")
        })?;
        if token.len() < MIN_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "line {n}: tokens must be at least {MIN_TOKEN_LEN} printable characters"
            ));
        }
        // `admin` after the namespaces (not after a comma: `a, admin` is
        // the namespaces `a` and `admin`, as it always was).
        let (namespaces, admin) = match namespaces.trim().rsplit_once(char::is_whitespace) {
            Some((list, "admin")) if !list.trim_end().ends_with(',') => (list, true),
            _ => (namespaces, false),
        };
        let namespaces: Granted = namespaces
            .trim()
            .split(',')
            .map(|ns| Arc::from(ns.trim()))
            .collect();
        if let Some(bad) = namespaces.iter().find(|ns| !valid_namespace(ns)) {
            return Err(format!(
                "line {n}: namespace `{bad}` must be 1..=64 of [A-Za-z0-9._-]"
            ));
        }
        if tokens
            .insert(sha256(token.as_bytes()), Grant { namespaces, admin })
            .is_some()
        {
            return Err(format!("line {n}: the token appears twice"));
        }
    }
    if tokens.is_empty() {
        return Err("the tokens file grants no token".into());
    }
    Ok(tokens)
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
mod tests;
