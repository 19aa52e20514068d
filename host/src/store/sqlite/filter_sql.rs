//! Compiles typed SCIM filters to SQL over the IdP-view tables.
//!
//! The attributes IdPs filter on (id, userName, externalId, displayName, emails.value,
//! members.value) compile to indexed columns and side tables; everything else to SQLite JSON
//! functions over the stored body. Semantics mirror `scim::eval` exactly (see its module doc):
//! each predicate is made NULL-free with `coalesce(…, 0)` so that `not` and `ne` behave as
//! there, and `ne` is compiled as the negation of `eq`.

use rusqlite::types::Value as SqlValue;

use crate::scim::eval::fold;
use crate::scim::filter::{CompareOp, Literal, Target, Typed};
use crate::scim::schema::{AttrDef, AttrType, ResourceKind};

/// Where a filter's paths are evaluated.
#[derive(Clone, Copy)]
enum Ctx<'a> {
    /// The resource row `r`.
    Resource,
    /// One element of a multi-valued attribute: a JSON value expression such as `j1.value`.
    Element(&'a str),
    /// One member of a group: the joined users row `mu`.
    Member,
}

/// An expression for a single value, and whether it is already case-folded.
struct Scalar {
    expr: String,
    folded: bool,
}

pub struct Compiler {
    kind: ResourceKind,
    pub params: Vec<SqlValue>,
    aliases: usize,
}

fn json_path(t: &Target, with_sub: bool) -> String {
    let mut p = String::from("$");
    if let Some(ext) = t.ext {
        p.push_str(&format!(".\"{ext}\""));
    }
    p.push_str(&format!(".\"{}\"", t.attr.name));
    if with_sub && let Some(s) = t.sub {
        p.push_str(&format!(".\"{}\"", s.name));
    }
    p
}

fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl Compiler {
    pub fn new(kind: ResourceKind) -> Compiler {
        Compiler { kind, params: Vec::new(), aliases: 0 }
    }

    pub fn param(&mut self, v: SqlValue) -> String {
        self.params.push(v);
        format!("?{}", self.params.len())
    }

    fn alias(&mut self) -> String {
        self.aliases += 1;
        format!("j{}", self.aliases)
    }

    /// Compiles a filter into a boolean SQL expression over the row alias `r`.
    pub fn compile(&mut self, f: &Typed) -> String {
        self.compile_in(f, Ctx::Resource)
    }

    fn compile_in(&mut self, f: &Typed, ctx: Ctx<'_>) -> String {
        match f {
            Typed::And(a, b) => format!("({} AND {})", self.compile_in(a, ctx), self.compile_in(b, ctx)),
            Typed::Or(a, b) => format!("({} OR {})", self.compile_in(a, ctx), self.compile_in(b, ctx)),
            Typed::Not(a) => format!("(NOT {})", self.compile_in(a, ctx)),
            Typed::Present(t) => self.present(t, ctx),
            Typed::Cmp(t, op, lit) => match (op, lit) {
                (CompareOp::Eq, Literal::Null) => format!("(NOT {})", self.present(t, ctx)),
                (CompareOp::Ne, Literal::Null) => self.present(t, ctx),
                (CompareOp::Ne, _) => format!("(NOT {})", self.cmp_target(t, CompareOp::Eq, lit, ctx)),
                _ => self.cmp_target(t, *op, lit, ctx),
            },
            Typed::Any(t, inner) => self.any(t, inner),
        }
    }

    /// A column that answers this target directly (indexed), if there is one.
    fn indexed(&self, t: &Target) -> Option<Scalar> {
        if t.ext.is_some() {
            return None;
        }
        let col = |expr: &str, folded: bool| Some(Scalar { expr: expr.to_string(), folded });
        match (self.kind, t.attr.name, t.sub.map(|s| s.name)) {
            (_, "id", None) => col("r.id", false),
            (_, "externalId", None) => col("r.external_id", false),
            (_, "displayName", None) => col("r.display_name_fold", true),
            (ResourceKind::User, "userName", None) => col("r.user_name_fold", true),
            (_, "meta", Some("created")) => col("r.created", false),
            (_, "meta", Some("lastModified")) => col("r.modified", false),
            (k, "meta", Some("resourceType")) => Some(Scalar { expr: sql_str(k.name()), folded: false }),
            _ => None,
        }
    }

    fn cmp_target(&mut self, t: &Target, op: CompareOp, lit: &Literal, ctx: Ctx<'_>) -> String {
        let leaf = t.leaf();
        match ctx {
            Ctx::Element(base) => {
                let s = Scalar { expr: format!("json_extract({base}, '$.\"{}\"')", t.attr.name), folded: false };
                return self.cmp(&s, leaf, op, lit);
            }
            Ctx::Member => {
                let s = member_scalar(t.attr.name);
                return self.cmp(&s, leaf, op, lit);
            }
            Ctx::Resource => {}
        }
        if let Some(s) = self.indexed(t) {
            return self.cmp(&s, leaf, op, lit);
        }
        match (self.kind, t.attr.name, t.sub.map(|s| s.name)) {
            (ResourceKind::User, "emails", Some("value")) if t.ext.is_none() => {
                let s = Scalar { expr: "e.value_fold".into(), folded: true };
                let c = self.cmp(&s, leaf, op, lit);
                format!("EXISTS (SELECT 1 FROM user_emails e WHERE e.user_pk = r.pk AND {c})")
            }
            (ResourceKind::Group, "members", sub) if t.ext.is_none() => {
                let s = member_scalar(sub.unwrap_or("value"));
                self.members_exists(|c| c.cmp(&s, leaf, op, lit), op == CompareOp::Eq && sub.unwrap_or("value") == "value", lit)
            }
            _ if t.attr.multi => {
                let a = self.alias();
                let elem = match t.sub {
                    Some(s) => format!("json_extract({a}.value, '$.\"{}\"')", s.name),
                    None => format!("{a}.value"),
                };
                let c = self.cmp(&Scalar { expr: elem, folded: false }, leaf, op, lit);
                format!("EXISTS (SELECT 1 FROM json_each(r.body, '{}') {a} WHERE {c})", json_path(t, false))
            }
            _ => {
                let s = Scalar { expr: format!("json_extract(r.body, '{}')", json_path(t, true)), folded: false };
                self.cmp(&s, leaf, op, lit)
            }
        }
    }

    /// `EXISTS` over the members of group `r`. A plain `value eq "id"` goes through the
    /// user id index and the membership primary key: O(log n) however large the group.
    fn members_exists(&mut self, inner: impl FnOnce(&mut Self) -> String, value_eq: bool, lit: &Literal) -> String {
        if value_eq && let Literal::Str(id) = lit {
            let p = self.param(SqlValue::Text(id.clone()));
            return format!(
                "EXISTS (SELECT 1 FROM group_members m WHERE m.group_pk = r.pk AND m.user_pk = (SELECT pk FROM users WHERE id = {p}))"
            );
        }
        let c = inner(self);
        format!("EXISTS (SELECT 1 FROM group_members m JOIN users mu ON mu.pk = m.user_pk WHERE m.group_pk = r.pk AND {c})")
    }

    fn any(&mut self, t: &Target, inner: &Typed) -> String {
        if self.kind == ResourceKind::Group && t.attr.name == "members" {
            if let Typed::Cmp(it, CompareOp::Eq, lit @ Literal::Str(_)) = inner
                && it.attr.name == "value"
            {
                let lit = lit.clone();
                return self.members_exists(|_| String::new(), true, &lit);
            }
            return self.members_exists(|c| c.compile_in(inner, Ctx::Member), false, &Literal::Null);
        }
        let a = self.alias();
        let base = format!("{a}.value");
        let c = self.compile_in(inner, Ctx::Element(&base));
        format!("EXISTS (SELECT 1 FROM json_each(r.body, '{}') {a} WHERE {c})", json_path(t, false))
    }

    fn present(&mut self, t: &Target, ctx: Ctx<'_>) -> String {
        match ctx {
            Ctx::Element(base) => {
                let e = format!("json_extract({base}, '$.\"{}\"')", t.attr.name);
                return format!("coalesce({e} IS NOT NULL AND (typeof({e}) <> 'text' OR {e} <> ''), 0)");
            }
            Ctx::Member => {
                let e = member_scalar(t.attr.name).expr;
                return format!("coalesce({e} IS NOT NULL AND {e} <> '', 0)");
            }
            Ctx::Resource => {}
        }
        if let Some(s) = self.indexed(t) {
            return format!("coalesce({e} IS NOT NULL AND {e} <> '', 0)", e = s.expr);
        }
        match (self.kind, t.attr.name) {
            (ResourceKind::User, "emails") if t.ext.is_none() && t.sub.is_none_or(|s| s.name == "value") => {
                "EXISTS (SELECT 1 FROM user_emails e WHERE e.user_pk = r.pk AND e.value_fold <> '')".into()
            }
            (ResourceKind::Group, "members") if t.ext.is_none() => {
                let sub = t.sub.map(|s| s.name).unwrap_or("value");
                let e = member_scalar(sub).expr;
                format!("EXISTS (SELECT 1 FROM group_members m JOIN users mu ON mu.pk = m.user_pk WHERE m.group_pk = r.pk AND {e} IS NOT NULL AND {e} <> '')")
            }
            _ if t.attr.multi => match t.sub {
                None => format!("coalesce(json_array_length(r.body, '{}') > 0, 0)", json_path(t, false)),
                Some(s) => {
                    let a = self.alias();
                    let e = format!("json_extract({a}.value, '$.\"{}\"')", s.name);
                    format!(
                        "EXISTS (SELECT 1 FROM json_each(r.body, '{}') {a} WHERE {e} IS NOT NULL AND (typeof({e}) <> 'text' OR {e} <> ''))",
                        json_path(t, false)
                    )
                }
            },
            _ => {
                let p = json_path(t, true);
                format!("coalesce(json_type(r.body, '{p}') <> 'null' AND (json_type(r.body, '{p}') <> 'text' OR json_extract(r.body, '{p}') <> ''), 0)")
            }
        }
    }

    fn cmp(&mut self, s: &Scalar, leaf: &AttrDef, op: CompareOp, lit: &Literal) -> String {
        let sym = match op {
            CompareOp::Eq => "=",
            CompareOp::Ne => "<>",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Co | CompareOp::Sw | CompareOp::Ew => "",
        };
        match lit {
            Literal::Null => "0".into(),
            Literal::Bool(b) => format!("coalesce({} {sym} {}, 0)", s.expr, i32::from(*b)),
            Literal::Num(n) => {
                let p = self.param(SqlValue::Real(*n));
                format!("coalesce(typeof({e}) IN ('integer', 'real') AND {e} {sym} {p}, 0)", e = s.expr)
            }
            Literal::Str(v) => {
                let substring = matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew);
                let fold_it = !leaf.case_exact && !(leaf.ty == AttrType::DateTime && !substring);
                let (e, v) = if fold_it && !s.folded {
                    (format!("scim_fold({})", s.expr), fold(v))
                } else if fold_it {
                    (s.expr.clone(), fold(v))
                } else {
                    (s.expr.clone(), v.clone())
                };
                let guard = format!("typeof({}) = 'text'", s.expr);
                let n = v.chars().count();
                if substring && n == 0 {
                    return format!("coalesce({guard}, 0)");
                }
                let p = self.param(SqlValue::Text(v));
                let body = match op {
                    CompareOp::Co => format!("instr({e}, {p}) > 0"),
                    CompareOp::Sw => format!("substr({e}, 1, {n}) = {p}"),
                    CompareOp::Ew => format!("length({e}) >= {n} AND substr({e}, -{n}) = {p}"),
                    _ => format!("{e} {sym} {p}"),
                };
                format!("coalesce({guard} AND {body}, 0)")
            }
        }
    }

    /// An ORDER BY expression for `sortBy`.
    pub fn sort_expr(&self, t: &Target) -> String {
        if let Some(s) = self.indexed(t) {
            return s.expr;
        }
        let expr = if t.attr.multi {
            // Multi-valued: sort by the first value (RFC 7644 leaves the choice to the server).
            let sub = t.sub.map(|s| format!(".\"{}\"", s.name)).unwrap_or_default();
            format!("json_extract(r.body, '{}[0]{sub}')", json_path(t, false))
        } else {
            format!("json_extract(r.body, '{}')", json_path(t, true))
        };
        if t.leaf().case_exact || t.leaf().ty != AttrType::String { expr } else { format!("scim_fold({expr})") }
    }
}

fn member_scalar(sub: &str) -> Scalar {
    let expr = match sub {
        "value" => "mu.id".to_string(),
        "display" => "coalesce(json_extract(mu.body, '$.displayName'), json_extract(mu.body, '$.userName'))".to_string(),
        "type" => "'User'".to_string(),
        _ => "NULL".to_string(),
    };
    Scalar { expr, folded: false }
}
