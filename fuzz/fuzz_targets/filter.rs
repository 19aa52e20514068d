//! The filter language (RFC 7644 §3.4.2.2) from arbitrary text: parsing, resolving against
//! both schemas and evaluating must never panic, and a parsed filter printed back parses to
//! the same filter (the printed form is what the store's SQL compiler and the audit log see).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mapwright_scim::eval;
use mapwright_scim::filter::Filter;
use mapwright_scim::schema::ResourceKind;
use serde_json::json;

fuzz_target!(|text: &str| {
    for parsed in [Filter::parse(text), Filter::parse_value_filter(text)] {
        let Ok(f) = parsed else { continue };
        let printed = f.to_string();
        let again = Filter::parse(&printed).or_else(|_| Filter::parse_value_filter(&printed));
        assert_eq!(again.as_ref().ok(), Some(&f), "printed as {printed:?}");
        let user = json!({
            "userName": "Jane.Doe@acme.com", "active": true, "displayName": "Jane",
            "emails": [{"value": "jane@acme.com", "type": "work", "primary": true}, {"value": ""}],
            "name": {"givenName": "Jane", "familyName": "Doé"},
            "meta": {"created": "2024-01-02T03:04:05Z", "lastModified": "2024-01-02T03:04:05.678Z"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Eng", "manager": {"value": "7"}},
        });
        let group = json!({"displayName": "Dev users", "members": [{"value": "1", "display": "Jane"}]});
        for (kind, res) in [(ResourceKind::User, &user), (ResourceKind::Group, &group)] {
            if let Ok(typed) = f.resolve(kind) {
                let _ = eval::matches(&typed, res);
            }
        }
    }
});
