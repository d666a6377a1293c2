//! Properties over arbitrary mutations and ids: the checks never panic, and
//! they accept exactly what a plain reading of the limits accepts.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::session::SessionKey;

/// Small limits, so generated requests land on both sides of each.
fn small() -> Limits {
    Limits {
        max_fields: 4,
        max_field_bytes: 8,
        max_session_bytes: 24,
        lease_default: Duration::from_secs(1),
        lease_min: Duration::from_millis(100),
        lease_max: Duration::from_secs(10),
        wait_max: Duration::from_secs(10),
        idle_ttl: Duration::from_secs(60),
        quotas: Default::default(),
        idempotency_window: Duration::from_secs(600),
        rate_default: (10.0, 10),
        max_turn_payload_bytes: 4096,
    }
}

/// Names: mostly short and plain, some empty, long, or holding control,
/// bidi and zero-width characters.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-c]{1,3}",
        1 => "\\PC{0,4}",
        1 => ".{0,3}[\u{0}\u{7}\u{1b}\u{7f}\u{85}\u{202e}\u{200b}\u{2028}].{0,3}",
        1 => "[a-z]{250,260}",
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let set = prop::collection::vec(
        (
            name(),
            prop::collection::vec(any::<u8>(), 0..12).prop_map(Bytes::from),
        ),
        0..7,
    );
    let delete = prop::collection::vec(name(), 0..7);
    (set, delete, any::<bool>()).prop_map(|(set, delete, replace)| Mutation {
        set,
        delete,
        replace,
        ops: Vec::new(),
    })
}

/// The limits as the README states them, checked the slow way.
fn acceptable(l: &Limits, m: &Mutation) -> bool {
    let name_ok =
        |n: &String| !n.is_empty() && n.len() <= MAX_ID_BYTES && !n.chars().any(char::is_control);
    let bytes: u64 = m.set.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
    let deleted: HashSet<&String> = m.delete.iter().collect();
    m.set.len() <= l.max_fields
        && m.delete.len() <= l.max_fields
        && bytes <= l.max_session_bytes
        && m.set
            .iter()
            .all(|(k, v)| name_ok(k) && v.len() as u64 <= l.max_field_bytes)
        && m.delete.iter().all(name_ok)
        && !m.set.iter().any(|(k, _)| deleted.contains(k))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn check_mutation_accepts_exactly_what_the_limits_allow(m in mutation()) {
        let l = small();
        let verdict = l.check_mutation(&m);
        prop_assert_eq!(verdict.is_ok(), acceptable(&l, &m), "{:?}", verdict);
        if let Err(e) = verdict {
            prop_assert!(
                matches!(e, Error::LimitExceeded { .. } | Error::InvalidArgument { .. }),
                "{:?}", e
            );
        }
    }

    #[test]
    fn session_ids_are_checked_without_panicking(id in prop_oneof![name(), "\\PC{0,300}", ".{0,8}"]) {
        match SessionKey::new("default", &id) {
            Ok(key) => {
                prop_assert!(!id.is_empty() && id.len() <= MAX_ID_BYTES);
                prop_assert!(!id.chars().any(char::is_control));
                prop_assert_eq!(&*key.id, id.as_str());
            }
            Err(e) => prop_assert!(matches!(e, Error::InvalidArgument { .. }), "{:?}", e),
        }
    }

    #[test]
    fn plain_ids_are_accepted(id in "[A-Za-z0-9._:@-]{1,256}") {
        prop_assert!(SessionKey::new("default", &id).is_ok());
    }

    #[test]
    fn leases_and_waits_never_panic(ms in any::<u32>()) {
        let l = small();
        if let Ok(d) = l.lease(ms) {
            prop_assert!(d >= l.lease_min && d <= l.lease_max);
        }
        if let Ok(d) = l.wait(ms) {
            prop_assert!(d <= l.wait_max);
        }
    }
}
