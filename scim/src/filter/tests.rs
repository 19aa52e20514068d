//! Tests of the filter grammar: parsing, printing, resolution, limits (and a property test).
#![allow(clippy::unwrap_used, clippy::panic)]
use super::*;
use proptest::prelude::*;

#[test]
fn the_largest_accepted_filter_fits_a_small_stack_and_one_more_clause_is_refused() {
    // Trees are walked recursively (resolve, evaluate, print, SQL, drop): a flat chain of
    // 60k `or`s used to overflow a 2 MiB stack and abort the server.
    let at_limit = vec!["userName pr"; MAX_CLAUSES].join(" or ");
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let f = Filter::parse(&at_limit).unwrap();
            let t = f.resolve(ResourceKind::User).unwrap();
            assert!(crate::eval::matches(&t, &serde_json::json!({"userName": "x"})));
            assert_eq!(Filter::parse(&f.to_string()).unwrap(), f);
        })
        .unwrap()
        .join()
        .unwrap();
    let over = vec!["userName pr"; MAX_CLAUSES + 1].join(" and ");
    assert!(Filter::parse(&over).unwrap_err().detail.contains("too many"));
    let over = vec!["value eq \"1\""; MAX_CLAUSES + 1].join(" or ");
    assert!(Filter::parse_value_filter(&over).is_err());
}

#[test]
fn prints_only_the_parentheses_the_tree_needs() {
    for (input, printed) in [
        ("a pr or b pr or c pr", "a pr or b pr or c pr"),
        ("a pr or (b pr or c pr)", "a pr or (b pr or c pr)"),
        ("a pr and b pr or c pr", "a pr and b pr or c pr"),
        ("a pr and (b pr or c pr)", "a pr and (b pr or c pr)"),
        ("(a pr and b pr) and c pr", "a pr and b pr and c pr"),
        ("not (a pr or b pr) and emails[type eq \"work\" or primary eq true]", "not (a pr or b pr) and emails[type eq \"work\" or primary eq true]"),
    ] {
        let f = Filter::parse(input).unwrap();
        assert_eq!(f.to_string(), printed);
        assert_eq!(Filter::parse(printed).unwrap(), f);
    }
}

#[test]
fn parses_rfc_examples() {
    for f in [
        r#"userName Eq "john""#,
        r#"name.familyName co "O'Malley""#,
        r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
        r#"title pr"#,
        r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
        r#"title pr and userType eq "Employee""#,
        r#"title pr or userType eq "Intern""#,
        r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
        r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
        r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
        r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
        r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
    ] {
        Filter::parse(f).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
}

#[test]
fn unquoted_values_are_strings_where_unambiguous() {
    let s = |v: &str| CompValue::Str(v.into());
    let value = |f: &str| match Filter::parse(f).unwrap_or_else(|e| panic!("{f}: {e}")) {
        Filter::Compare(_, _, v) => v,
        other => panic!("{f}: {other:?}"),
    };
    assert_eq!(value("externalId eq jyoung"), s("jyoung"));
    // Ids that start with a digit, addresses, anything without spaces, brackets or quotes.
    assert_eq!(value("id eq 5fb3c0a2-11d3-4c1b-9a55-0d3c1e2f4a6b"), s("5fb3c0a2-11d3-4c1b-9a55-0d3c1e2f4a6b"));
    assert_eq!(value("userName eq jdoe@acme.com"), s("jdoe@acme.com"));
    assert_eq!(value("externalId eq 1.2.3"), s("1.2.3"));
    // What has a meaning of its own keeps it.
    assert_eq!(value("active eq true"), CompValue::Bool(true));
    assert_eq!(value("title eq null"), CompValue::Null);
    assert_eq!(value("externalId eq 42"), CompValue::Num(42.into()));
    let both = Filter::parse("id eq 0a1b and manager.value eq 9c8d").unwrap();
    assert_eq!(both.to_string(), r#"id eq "0a1b" and manager.value eq "9c8d""#);
    for bad in ["title eq and", "title eq or x", "userName eq jdoe extra", "title eq", "(title eq x", "@x eq y"] {
        let e = Filter::parse(bad).unwrap_err();
        assert_eq!(e.scim_type, Some(crate::error::ScimType::InvalidFilter), "{bad}");
    }
}

#[test]
fn a_value_filter_followed_by_a_sub_attribute_is_one_element_matching_both() {
    let f = Filter::parse(r#"emails[type eq "work"].value eq "jdoe@acme.com""#).unwrap();
    assert_eq!(f, Filter::parse(r#"emails[type eq "work" and value eq "jdoe@acme.com"]"#).unwrap());
    let f = Filter::parse(r#"emails[type eq work].value pr and active eq true"#).unwrap();
    assert_eq!(f.to_string(), r#"emails[type eq "work" and value pr] and active eq true"#);
    assert!(f.resolve(ResourceKind::User).is_ok());
    for bad in [r#"emails[type eq "work"].value"#, r#"emails[type eq "work"].a.b eq "x""#, r#"emails[type eq "work"]. eq "x""#] {
        assert!(Filter::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn precedence_and_binds_tighter_than_or() {
    let f = Filter::parse(r#"a eq "1" or b eq "2" and c eq "3""#).unwrap();
    assert!(matches!(f, Filter::Or(_, ref r) if matches!(**r, Filter::And(_, _))), "{f}");
}

#[test]
fn urn_paths_split_at_last_colon() {
    let p = AttrPath::parse("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value").unwrap();
    assert_eq!(p.urn.as_deref(), Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"));
    assert_eq!((p.attr.as_str(), p.sub.as_deref()), ("manager", Some("value")));
}

#[test]
fn rejects_malformed() {
    for f in ["", "userName", "userName eq", r#"userName zz "x""#, r#"(userName eq "x""#, r#"userName eq "x" extra"#,
              r#"emails[type eq "work""#, r#"emails[type[value eq "x"]]"#, r#"userName eq "unterminated"#] {
        let e = Filter::parse(f).unwrap_err();
        assert_eq!(e.scim_type, Some(crate::error::ScimType::InvalidFilter), "{f}");
    }
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let f = format!("{}userName eq \"x\"{}", "(".repeat(10_000), ")".repeat(10_000));
    assert!(Filter::parse(&f).is_err());
}

#[test]
fn resolve_checks_types() {
    let k = ResourceKind::User;
    assert!(Filter::parse("active gt true").unwrap().resolve(k).is_err());
    assert!(Filter::parse(r#"nope eq "x""#).unwrap().resolve(k).is_err());
    assert!(Filter::parse(r#"name eq "x""#).unwrap().resolve(k).is_err());
    assert!(Filter::parse(r#"userName[value eq "x"]"#).unwrap().resolve(k).is_err());
    assert!(Filter::parse(r#"emails[type eq "work"]"#).unwrap().resolve(k).is_ok());
    assert!(Filter::parse(r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "x""#).unwrap().resolve(k).is_ok());
    assert!(Filter::parse(r#"meta.created gt "not a date""#).unwrap().resolve(k).is_err());
}

fn arb_path() -> impl Strategy<Value = AttrPath> {
    let name = "[a-zA-Z][a-zA-Z0-9_]{0,8}";
    (proptest::option::of(Just("urn:ietf:params:scim:schemas:core:2.0:User".to_string())), name, proptest::option::of(name))
        .prop_map(|(urn, attr, sub)| AttrPath { urn, attr, sub })
}

fn arb_value() -> impl Strategy<Value = CompValue> {
    prop_oneof![
        any::<String>().prop_map(CompValue::Str),
        any::<i64>().prop_map(|n| CompValue::Num(n.into())),
        any::<bool>().prop_map(CompValue::Bool),
        Just(CompValue::Null),
    ]
}

fn arb_op() -> impl Strategy<Value = CompareOp> {
    use CompareOp::*;
    proptest::sample::select(vec![Eq, Ne, Co, Sw, Ew, Gt, Ge, Lt, Le])
}

fn arb_filter(in_brackets: bool) -> BoxedStrategy<Filter> {
    let path = if in_brackets { arb_path().prop_map(|p| AttrPath { urn: None, sub: None, ..p }).boxed() } else { arb_path().boxed() };
    let leaf = prop_oneof![
        (path.clone(), arb_op(), arb_value()).prop_map(|(p, o, v)| Filter::Compare(p, o, v)),
        path.prop_map(Filter::Present),
    ];
    leaf.prop_recursive(4, 24, 2, move |inner| {
        let mut options = vec![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::And(Box::new(a), Box::new(b))).boxed(),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::Or(Box::new(a), Box::new(b))).boxed(),
            inner.clone().prop_map(|a| Filter::Not(Box::new(a))).boxed(),
        ];
        if !in_brackets {
            options.push(
                (arb_path().prop_map(|p| AttrPath { sub: None, ..p }), arb_filter(true))
                    .prop_map(|(p, f)| Filter::ValuePath(p, Box::new(f)))
                    .boxed(),
            );
        }
        proptest::strategy::Union::new(options)
    })
    .boxed()
}

proptest! {
    #[test]
    fn print_then_parse_is_identity(f in arb_filter(false)) {
        let printed = f.to_string();
        let reparsed = Filter::parse(&printed).map_err(|e| TestCaseError::fail(format!("{printed}: {e}")))?;
        prop_assert_eq!(&reparsed, &f);
        prop_assert_eq!(reparsed.to_string(), printed);
    }

    #[test]
    fn a_value_filter_with_a_sub_attribute_means_the_conjunction(p in arb_path(), inner in arb_filter(true), sub in "[a-zA-Z][a-zA-Z0-9_]{0,8}", op in arb_op(), v in arb_value()) {
        let p = AttrPath { sub: None, ..p };
        let sugared = format!("{p}[{inner}].{sub} {} {v}", op.as_str());
        let tail = Filter::Compare(AttrPath { urn: None, attr: sub, sub: None }, op, v);
        let parsed = Filter::parse(&sugared).map_err(|e| TestCaseError::fail(format!("{sugared}: {e}")))?;
        prop_assert_eq!(parsed, Filter::ValuePath(p, Box::new(Filter::And(Box::new(inner), Box::new(tail)))));
    }

    #[test]
    fn parser_never_panics(s in "\\PC{0,64}") {
        let _ = Filter::parse(&s);
    }
}
