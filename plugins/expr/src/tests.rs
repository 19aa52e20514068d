#![allow(clippy::unwrap_used)]
use super::*;
use mapwright_plugin_sdk::testing;

/// The example tenant's Okta chain (username, groups, attributes plugins) as one entry.
const OKTA: &str = r#"{
  "username": "lower(regex_replace(local_part(primary_email(user)), r'^(.)[^.]*\\.(.+)$', '$1$2'))",
  "groups": "group.displayName == 'Dev users' ? 'software_dev' : (group.displayName.startsWith('eng-') ? substring(group.displayName, 4) : null)",
  "memberships": [{"groups": ["app-users"]}],
  "attributes": {"urn:mapwright:custom:User:department": "attr(user, 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department')",
                 "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "null"}
}"#;

const JANE: &str = r#"{"userName": "x", "emails": [{"value": "Jane.Doe@acme.com", "primary": true}],
  "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"}}"#;

fn eval(src: &str, user: &str) -> Result<Json, String> {
    let c: Config = serde_json::from_value(json!({"username": src})).unwrap();
    let u = User::from_json(user).unwrap();
    Expressions::username(&Context::test(), &c, &u, "p").map(|d| json!(d.value)).map_err(|r| r.reason)
}

#[test]
fn the_okta_chain_as_one_entry() {
    assert_eq!(testing::username::<Expressions>(OKTA, JANE).unwrap().value, "jdoe");
    assert_eq!(testing::map_group::<Expressions>(OKTA, "Dev users").unwrap().value, ["software_dev"]);
    assert_eq!(testing::map_group::<Expressions>(OKTA, "eng-platform").unwrap().value, ["platform"]);
    let none = testing::map_group::<Expressions>(OKTA, "Marketing").unwrap();
    assert!(none.value.is_empty());
    assert_eq!(none.provenance.unwrap().reason, "'Marketing' is not synced");
    let m = testing::user_memberships::<Expressions>(OKTA, JANE, true, Memberships::default()).unwrap().value;
    assert_eq!(m.add, ["app-users"]);
    let a = testing::attributes::<Expressions>(OKTA, JANE).unwrap();
    assert_eq!(a.value["urn:mapwright:custom:User"]["department"], "R&D");
    assert!(a.value.get("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User").is_none(), "null removes, and the emptied extension goes");
}

#[test]
fn the_functions_admins_reach_for() {
    let u = r#"{"userName": "José.Müller@Acme.com", "name": {"givenName": " José ", "familyName": "Müller"}, "emails": [{"value": "a@x.io"}, {"value": "j@acme.com", "primary": true}]}"#;
    for (src, want) in [
        ("lower(replace(normalize(trim(user.name.givenName) + ' ' + user.name.familyName), ' ', '.'))", json!("jose.muller")),
        ("upper(substring(user.name.familyName, 0, 3))", json!("MÜL")),
        ("substring('abc', 1)", json!("bc")),
        ("substring('abc', 5, 9) + 'x'", json!("x")),
        ("join(split(user.userName, '.'), '-')", json!("José-Müller@Acme-com")),
        ("domain(user.userName)", json!("Acme.com")),
        ("primary_email(user)", json!("j@acme.com")),
        ("coalesce(attr(user, 'nickName'), attr(user, 'name.givenName'))", json!(" José ")),
        ("coalesce([attr(user, 'title'), '', 'fallback'])", json!("fallback")),
        ("switch(domain(primary_email(user)), {'acme.com': 'staff'}, 'guest')", json!("staff")),
        ("switch('other', {'acme.com': 'staff'}, 'guest')", json!("guest")),
        ("strip_spaces(' a b\tc ')", json!("abc")),
        ("regex_replace('jdoe42', '[0-9]+$', '')", json!("jdoe")),
        ("join(candidates('jdoe', 3), ',')", json!("jdoe,jdoe2,jdoe3")),
        ("user.emails.exists(e, e.value.endsWith('.io')) ? 'io' : 'no'", json!("io")),
    ] {
        assert_eq!(eval(src, u), Ok(want), "{src}");
    }
}

#[test]
fn a_compile_error_names_the_key_and_the_position() {
    let e = testing::validate_config::<Expressions>(r#"{"attributes": {"title": "user.title +"}}"#).unwrap_err();
    assert!(e.starts_with("attributes.title: ERROR: <input>:1:13"), "{e}");
    let e = testing::validate_config::<Expressions>(r#"{"deprovision": [{"action": "vanish"}]}"#).unwrap_err();
    assert!(e.contains("deprovision[0].action: 'vanish' is not an action"), "{e}");
    assert!(testing::validate_config::<Expressions>(r#"{"usernme": "x"}"#).is_err(), "unknown keys are refused");
    assert!(testing::validate_config::<Expressions>(OKTA).is_ok());
}

#[test]
fn a_run_time_error_names_the_key_and_the_expression() {
    let e = eval("user.name.givenName", r#"{"userName": "a"}"#).unwrap_err();
    assert!(e.starts_with("username: No such key: name (in `user.name.givenName`)"), "{e}");
    assert!(eval("42", r#"{"userName": "a"}"#).unwrap_err().contains("gave an int where a non-empty string or a list of them is needed"));
    assert!(eval("lower(42)", r#"{"userName": "a"}"#).unwrap_err().contains("argument 1 must be a string"));
    // Integers from JSON are CEL ints: arithmetic with literals works.
    assert_eq!(eval("string(user.n + 1)", r#"{"userName": "a", "n": 41}"#), Ok(json!("42")));
}

#[test]
fn a_username_may_be_candidates() {
    let c = r#"{"username": "candidates(lower(local_part(primary_email(user))), 3)"}"#;
    let d = testing::username_candidates::<Expressions>(c, JANE).unwrap();
    assert_eq!(d.value, ["jane.doe", "jane.doe2", "jane.doe3"]);
    assert_eq!(d.provenance.unwrap().reason, "x → the first free of jane.doe, jane.doe2, jane.doe3 by `candidates(lower(local_part(primary_email(user))), 3)`");
    // A single name is one candidate.
    assert_eq!(testing::username_candidates::<Expressions>(OKTA, JANE).unwrap().value, ["jdoe"]);
    let bad = r#"{"username": "[user.userName, 1]"}"#;
    assert!(testing::username_candidates::<Expressions>(bad, JANE).unwrap_err().reason.contains("a list holding an int"));
}

#[test]
fn deprovision_and_scope_by_condition() {
    let c = r#"{"deprovision": [{"when": "attr(user, 'userType') == 'Contractor'", "action": "delete", "retention_days": 0},
                              {"when": "trigger == 'deleted'", "action": "delete"}],
               "scope": "'Employees' in groups || domain(primary_email(user)) == 'acme.com'"}"#;
    let contractor = r#"{"userName": "c", "userType": "Contractor"}"#;
    let d = testing::deprovision::<Expressions>(c, contractor, Trigger::Deactivated).unwrap();
    assert_eq!(d.value, Action::Delete { retention_days: 0 });
    let d = testing::deprovision::<Expressions>(c, r#"{"userName": "e"}"#, Trigger::Deactivated).unwrap();
    assert_eq!(d.value, Action::Disable, "no rule holds: the proposal stands");
    assert_eq!(testing::deprovision::<Expressions>(c, r#"{"userName": "e"}"#, Trigger::Deleted).unwrap().value, Action::Delete { retention_days: 30 });
    assert!(testing::in_scope::<Expressions>(c, r#"{"userName": "x", "emails": [{"value": "x@acme.com"}]}"#, &[]).unwrap().value);
    assert!(testing::in_scope::<Expressions>(c, r#"{"userName": "x"}"#, &["Employees"]).unwrap().value);
    assert!(!testing::in_scope::<Expressions>(c, r#"{"userName": "x"}"#, &["Others"]).unwrap().value);
    let cfg: Config = serde_json::from_str(c).unwrap();
    assert!(Expressions::scopes(&cfg));
    assert!(!Expressions::scopes(&serde_json::from_str(OKTA).unwrap()), "no scope key: the entry does not scope");
}

#[test]
fn examples_are_the_self_test() {
    let ok: Config = serde_json::from_str(&OKTA.replace("\n}", r#", "examples": [{"user": {"userName": "x", "emails": [{"value": "jane.doe@acme.com"}]}, "user_name": "jdoe"},
        {"group": "eng-core", "groups": ["core"]}]}"#)).unwrap();
    assert_eq!(Expressions::self_test(&ok), Ok(()));
    let bad: Config = serde_json::from_str(r#"{"username": "lower(user.userName)", "examples": [{"user": {"userName": "Ann"}, "user_name": "Ann"}]}"#).unwrap();
    assert_eq!(Expressions::self_test(&bad), Err("example 1: userName became 'ann', expected 'Ann'".into()));
}
