//! The tokens file: its syntax, grants and reloads.
use super::*;

const FILE: &str = "# bots\nAAAAAAAAAAAAAAAAAAAA  telegram\nBBBBBBBBBBBBBBBBBBBB slack,line\n";

#[test]
fn tokens_grant_namespaces() {
    let a = Auth::parse(FILE).unwrap();
    assert_eq!(
        &*a.namespace(Some("Bearer AAAAAAAAAAAAAAAAAAAA"), None)
            .unwrap(),
        "telegram"
    );
    assert_eq!(
        &*a.namespace(Some("Bearer BBBBBBBBBBBBBBBBBBBB"), Some("line"))
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
fn the_admin_grant_is_a_third_word() {
    let a = Auth::parse("AAAAAAAAAAAAAAAAAAAA telegram\nCCCCCCCCCCCCCCCCCCCC ops,slack admin\n")
        .unwrap();
    let admin = a.admin_namespace(Some("Bearer CCCCCCCCCCCCCCCCCCCC"), Some("slack"));
    assert_eq!(&*admin.unwrap(), "slack");
    let first = a.admin_namespace(Some("Bearer CCCCCCCCCCCCCCCCCCCC"), None);
    assert_eq!(&*first.unwrap(), "ops");
    let other = a.admin_namespace(Some("Bearer CCCCCCCCCCCCCCCCCCCC"), Some("telegram"));
    assert!(matches!(other, Err(Error::PermissionDenied(_))));
    let plain = a.admin_namespace(Some("Bearer AAAAAAAAAAAAAAAAAAAA"), None);
    assert!(matches!(plain, Err(Error::AdminDenied(_))));
    // The admin token still works as a plain one.
    let ns = a.namespace(Some("Bearer CCCCCCCCCCCCCCCCCCCC"), Some("ops"));
    assert_eq!(&*ns.unwrap(), "ops");
    let bad = Auth::parse("CCCCCCCCCCCCCCCCCCCC ops root\n").unwrap_err();
    assert!(bad.contains("line 1"), "{bad}");
}

#[test]
fn the_scheme_is_matched_in_any_case() {
    let a = Auth::parse(FILE).unwrap();
    for v in [
        "bearer AAAAAAAAAAAAAAAAAAAA",
        "BEARER AAAAAAAAAAAAAAAAAAAA",
        "BeArEr   AAAAAAAAAAAAAAAAAAAA ",
    ] {
        assert_eq!(&*a.namespace(Some(v), None).unwrap(), "telegram", "{v:?}");
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
    let all = a.namespaces();
    let mut all: Vec<&str> = all.iter().map(|ns| &**ns).collect();
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

#[test]
fn a_changed_file_replaces_the_set_and_a_bad_one_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens");
    std::fs::write(&path, FILE).unwrap();
    let a = Auth::load(path.clone(), Duration::from_secs(1)).unwrap();
    assert_eq!(
        a.reload(),
        Ok(None),
        "an unchanged file is not parsed again"
    );

    std::fs::write(&path, "CCCCCCCCCCCCCCCCCCCC viber\n").unwrap();
    assert_eq!(a.reload(), Ok(Some(1)));
    let old = a.namespace(Some("Bearer AAAAAAAAAAAAAAAAAAAA"), None);
    assert!(matches!(old, Err(Error::Unauthenticated(_))));
    let new = a.namespace(Some("Bearer CCCCCCCCCCCCCCCCCCCC"), None);
    assert_eq!(&*new.unwrap(), "viber");

    std::fs::write(&path, "CCCCCCCCCCCCCCCCCCCC bad/ns\n").unwrap();
    assert!(a.reload().unwrap_err().contains("line 1"));
    let kept = a.namespace(Some("Bearer CCCCCCCCCCCCCCCCCCCC"), None);
    assert_eq!(&*kept.unwrap(), "viber");
    std::fs::remove_file(&path).unwrap();
    assert!(a.reload().is_err());
    assert!(
        a.namespace(Some("Bearer CCCCCCCCCCCCCCCCCCCC"), None)
            .is_ok()
    );
}

#[test]
fn no_token_is_kept_in_clear() {
    let a = Auth::parse(FILE).unwrap();
    let shown = format!("{a:?}");
    assert!(!shown.contains("AAAAAAAAAAAAAAAAAAAA"), "{shown}");
    assert!(!shown.contains("BBBBBBBBBBBBBBBBBBBB"), "{shown}");
}
