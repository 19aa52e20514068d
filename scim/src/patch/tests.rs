#![allow(clippy::unwrap_used, clippy::panic)]

use super::*;
use serde_json::json;

fn patch(body: &Value, ops: Value) -> ScimResult<Value> {
    let req = json!({"schemas": [PATCH_SCHEMA], "Operations": ops});
    apply(body, &parse_and_resolve(ResourceKind::User, &req)?)
}

#[test]
fn entra_dialect() {
    let u = json!({"userName": "a", "active": true, "emails": [{"value": "a@x.com", "type": "work", "primary": true}]});
    let out = patch(&u, json!([
        {"op": "Replace", "path": "active", "value": "False"},
        {"op": "Add", "value": {"name.givenName": "Ann", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Eng", "nonsense": 1}},
        {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "ann@x.com"},
        {"op": "Add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555"},
        {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": "boss-id"},
    ])).unwrap();
    assert_eq!(out, json!({
        "userName": "a", "active": false,
        "emails": [{"value": "ann@x.com", "type": "work", "primary": true}],
        "name": {"givenName": "Ann"},
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Eng", "manager": {"value": "boss-id"}},
        "phoneNumbers": [{"type": "mobile", "value": "+1 555"}],
    }));
}

#[test]
fn a_bare_manager_path_sets_the_enterprise_manager() {
    let ext = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    for value in [json!("boss-id"), json!({"value": "boss-id"})] {
        let out = patch(&json!({"userName": "a"}), json!([{"op": "Replace", "path": "manager", "value": value}])).unwrap();
        assert_eq!(out, json!({"userName": "a", ext: {"manager": {"value": "boss-id"}}}), "{value}");
    }
    let u = json!({"userName": "a", ext: {"manager": {"value": "boss-id"}, "department": "Eng"}});
    let out = patch(&u, json!([{"op": "remove", "path": "manager"}])).unwrap();
    assert_eq!(out, json!({"userName": "a", ext: {"department": "Eng"}}));
    let out = patch(&u, json!([{"op": "replace", "path": "manager.value", "value": "new-boss"}])).unwrap();
    assert_eq!(out[ext]["manager"], json!({"value": "new-boss"}));
    // A core attribute of that name wins; an unknown one is still an error.
    assert_eq!(patch(&json!({"userName": "a"}), json!([{"op": "replace", "path": "nosuch", "value": 1}])).unwrap_err().scim_type, Some(crate::error::ScimType::InvalidPath));
}

#[test]
fn okta_deactivation() {
    let out = patch(&json!({"userName": "a", "active": true}), json!([{"op": "replace", "value": {"active": false}}])).unwrap();
    assert_eq!(out["active"], json!(false));
}

#[test]
fn multi_valued_add_merges_and_remove_filters() {
    let u = json!({"userName": "a", "emails": [{"value": "a@x.com", "type": "work", "primary": true}]});
    let out = patch(&u, json!([{"op": "add", "path": "emails", "value": [{"value": "b@y.com", "type": "home", "primary": true}, {"value": "a@x.com", "type": "work", "primary": true}]}])).unwrap();
    assert_eq!(out["emails"], json!([{"value": "a@x.com", "type": "work", "primary": true}, {"value": "b@y.com", "type": "home"}]));
    let out = patch(&out, json!([{"op": "add", "path": "emails", "value": {"value": "b@y.com", "type": "home", "primary": true}}])).unwrap();
    assert_eq!(out["emails"], json!([{"value": "a@x.com", "type": "work"}, {"value": "b@y.com", "type": "home", "primary": true}]));
    let out = patch(&out, json!([{"op": "remove", "path": "emails[type eq \"work\"]"}])).unwrap();
    assert_eq!(out["emails"], json!([{"value": "b@y.com", "type": "home", "primary": true}]));
    let out = patch(&out, json!([{"op": "remove", "path": "emails[type eq \"home\"].primary"}])).unwrap();
    assert_eq!(out["emails"], json!([{"value": "b@y.com", "type": "home"}]));
}

#[test]
fn errors() {
    let u = json!({"userName": "a"});
    let e = patch(&u, json!([{"op": "remove"}])).unwrap_err();
    assert_eq!(e.scim_type, Some(crate::error::ScimType::NoTarget));
    let e = patch(&u, json!([{"op": "replace", "path": "id", "value": "x"}])).unwrap_err();
    assert_eq!(e.scim_type, Some(crate::error::ScimType::Mutability));
    let e = patch(&u, json!([{"op": "replace", "path": "bogus", "value": "x"}])).unwrap_err();
    assert_eq!(e.scim_type, Some(crate::error::ScimType::InvalidPath));
    let e = patch(&u, json!([{"op": "replace", "path": "emails[type eq \"work\" or type eq \"home\"]", "value": {"value": "x"}}])).unwrap_err();
    assert_eq!(e.scim_type, Some(crate::error::ScimType::NoTarget));
    let e = patch(&u, json!([{"op": "frobnicate", "path": "userName", "value": "x"}])).unwrap_err();
    assert_eq!(e.scim_type, Some(crate::error::ScimType::InvalidSyntax));
    let e = patch(&u, json!([{"op": "replace", "path": "active", "value": "perhaps"}])).unwrap_err();
    assert_eq!(e.scim_type, Some(crate::error::ScimType::InvalidValue));
}

#[test]
fn member_ops() {
    let req = json!({"schemas": [PATCH_SCHEMA], "Operations": [
        {"op": "Add", "path": "members", "value": [{"value": "u1"}, {"value": "u2"}]},
        {"op": "Remove", "path": "members", "value": [{"value": "u1"}]},
        {"op": "remove", "path": "members[value eq \"u3\" or value eq \"u4\"]"},
        {"op": "replace", "value": {"displayName": "New", "members": [{"value": "u9"}]}},
    ]});
    let ops = parse_and_resolve(ResourceKind::Group, &req).unwrap();
    let (rest, members) = split_members(ops).unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(members, vec![
        MemberOp::Add(vec!["u1".into(), "u2".into()]),
        MemberOp::Remove(vec!["u1".into()]),
        MemberOp::Remove(vec!["u3".into(), "u4".into()]),
        MemberOp::RemoveAll,
        MemberOp::Add(vec!["u9".into()]),
    ]);
}

#[test]
fn whole_extension_paths() {
    let u = json!({"userName": "a", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"division": "D"}});
    let ext = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    let out = patch(&u, json!([{"op": "add", "path": ext, "value": {"department": "Eng"}}, {"op": "replace", "path": "title", "value": "T"}])).unwrap();
    assert_eq!(out[ext], json!({"division": "D", "department": "Eng"}));
    assert_eq!(out["title"], "T");
    let out = patch(&out, json!([{"op": "remove", "path": ext}])).unwrap();
    assert!(out.get(ext).is_none());
    assert!(patch(&u, json!([{"op": "add", "path": ext, "value": {"bogus": 1}}])).is_err());
}

use proptest::prelude::*;

fn arb_name() -> impl Strategy<Value = String> {
    "[a-zA-Z][a-zA-Z0-9_]{0,8}"
}

fn arb_patch_path() -> impl Strategy<Value = PatchPath> {
    let urn = proptest::option::of(proptest::sample::select(vec![
        "urn:ietf:params:scim:schemas:core:2.0:User".to_string(),
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".to_string(),
    ]));
    let value = prop_oneof![
        any::<String>().prop_map(crate::filter::CompValue::Str),
        any::<bool>().prop_map(crate::filter::CompValue::Bool),
        any::<i32>().prop_map(|n| crate::filter::CompValue::Num(n.into())),
    ];
    let leaf = (arb_name(), value).prop_map(|(a, v)| Filter::Compare(AttrPath { urn: None, attr: a, sub: None }, crate::filter::CompareOp::Eq, v));
    let filter = leaf.prop_recursive(2, 6, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner).prop_map(|(a, b)| Filter::Or(Box::new(a), Box::new(b))),
        ]
    });
    (urn, arb_name(), proptest::option::of(filter), proptest::option::of(arb_name()), proptest::option::of(arb_name())).prop_map(|(urn, attr, filter, sub, attr_sub)| {
        match filter {
            // attr[filter].sub
            Some(f) => PatchPath { attr: AttrPath { urn, attr, sub: None }, filter: Some(f), sub },
            // attr.sub
            None => PatchPath { attr: AttrPath { urn, attr, sub: attr_sub }, filter: None, sub: None },
        }
    })
}

proptest! {
    #[test]
    fn patch_path_print_parse_round_trip(p in arb_patch_path()) {
        let printed = p.to_string();
        let back = PatchPath::parse(&printed).map_err(|e| TestCaseError::fail(format!("{printed}: {e}")))?;
        prop_assert_eq!(&back, &p);
    }

    #[test]
    fn patch_parsing_never_panics(path in "\\PC{0,40}", op in "(?i)add|remove|replace|x") {
        let body = json!({"schemas": [PATCH_SCHEMA], "Operations": [{"op": op, "path": path, "value": {"value": "x"}}]});
        for kind in [ResourceKind::User, ResourceKind::Group] {
            if let Ok(ops) = parse_and_resolve(kind, &body) {
                let _ = apply(&json!({"userName": "u", "displayName": "g", "emails": [{"value": "a", "type": "work"}]}), &ops);
            }
        }
    }
}

#[test]
fn unknown_extensions_are_patched_verbatim() {
    let custom = "urn:ietf:params:scim:schemas:extension:custom:2.0:User";
    let u = json!({"userName": "a"});
    let out = patch(&u, json!([
        {"op": "Add", "path": format!("{custom}:worksiteId"), "value": "180"},
        {"op": "Replace", "value": {format!("{custom}:badge"): "B-7"}},
    ])).unwrap();
    assert_eq!(out[custom], json!({"worksiteId": "180", "badge": "B-7"}));
    let out = patch(&out, json!([{"op": "Remove", "path": format!("{custom}:worksiteId")}])).unwrap();
    assert_eq!(out[custom], json!({"badge": "B-7"}));
    let out = patch(&out, json!([{"op": "remove", "path": custom}])).unwrap();
    assert!(out.get(custom).is_none());
    // An unknown core attribute is still an error.
    assert!(patch(&u, json!([{"op": "add", "path": "urn:ietf:params:scim:schemas:core:2.0:User:nope", "value": 1}])).is_err());
}

#[test]
fn path_parsing() {
    let p = PatchPath::parse(r#"emails[type eq "wo]rk"].value"#).unwrap();
    assert_eq!(p.sub.as_deref(), Some("value"));
    assert!(PatchPath::parse(r#"emails[type eq "x"]junk"#).is_err());
    assert!(PatchPath::parse(r#"emails[type eq "x""#).is_err());
}
