//! SCIM resource bodies from arbitrary JSON, as IdPs send them on POST and PUT: canonicalising
//! against the User and Group schemas must never panic, and is idempotent (a stored resource
//! read back and canonicalised again does not change).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mapwright_scim::resource::canonicalize;
use mapwright_scim::schema::ResourceKind;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<Value>(data) else { return };
    for kind in [ResourceKind::User, ResourceKind::Group] {
        if let Ok(once) = canonicalize(kind, &input) {
            let twice = canonicalize(kind, &once);
            assert_eq!(twice.as_ref().ok(), Some(&once), "canonical form of {input} is not stable");
        }
    }
});
