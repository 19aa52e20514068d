//! Compiles typed SCIM filters to SQL, over either stored layer ([`Surface`]): the IdP view
//! (`users`/`groups`, what SCIM clients list) or the directory (`entries`/`app_groups`, what
//! the application lists).
//!
//! The attributes IdPs filter on (id, userName, externalId, displayName, emails.value,
//! members.value) compile to indexed columns and side tables; everything else to SQLite JSON
//! functions over the stored body. Semantics mirror `scim::eval` exactly (see its module doc):
//! each predicate is made NULL-free (`x IS NOT NULL AND …`) so that `not` and `ne` behave as
//! there, and `ne` is compiled as the negation of `eq`.
//!
//! Two dialects: SQLite's JSON functions return SQL values (`typeof` tells text from number);
//! PostgreSQL's paths return `jsonb` (`jsonb_typeof` tells them, `#>> '{}'` gives the text),
//! and every string comparison there says `COLLATE "C"` so that order is code point order,
//! as in Rust, whatever the database's locale. PostgreSQL evaluates `AND` in any order, so a
//! cast that could fail sits behind `CASE`, never behind `AND`.


use crate::scim::eval::fold;
use crate::scim::filter::{CompareOp, Literal, Target, Typed};
use crate::scim::schema::{AttrDef, AttrType, ResourceKind};
use crate::store::sql::{Cell, Dialect};

/// Which stored layer a filter runs over; the row alias is always `r`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Surface {
    /// `users r` / `groups r` of one IdP connection; the resource is `r.body`.
    IdpView,
    /// `entries r` / `app_groups r` of one tenant. An entry's resource is `r.attributes`
    /// (userName, active, id and meta are columns); an app group has only its name.
    Directory,
}

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

/// An expression for a single value, what kind of expression it is, and whether it is
/// already case-folded.
struct Scalar {
    expr: String,
    of: Of,
    folded: bool,
}

/// What a [`Scalar`]'s expression is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Of {
    /// A text column (or literal, or NULL).
    Text,
    /// An integer column (a flag: 0 or 1).
    Int,
    /// A value inside a JSON document: an SQL value in SQLite, `jsonb` in PostgreSQL.
    Json,
}

impl Scalar {
    fn col(expr: &str, of: Of, folded: bool) -> Scalar {
        Scalar { expr: expr.to_string(), of, folded }
    }
}

pub struct Compiler {
    kind: ResourceKind,
    surface: Surface,
    dialect: Dialect,
    pub params: Vec<Cell>,
    aliases: usize,
}

/// The path segments of a target, for PostgreSQL's `#>` (`ARRAY['a', 'b']`).
fn pg_path(t: &Target, with_sub: bool) -> String {
    pg_path_at(t, None, with_sub)
}

/// [`pg_path`] through element `index` of the attribute before its sub-attribute.
fn pg_path_at(t: &Target, index: Option<usize>, with_sub: bool) -> String {
    let mut segs = Vec::new();
    if let Some(ext) = t.ext {
        segs.push(sql_str(ext));
    }
    segs.push(sql_str(t.attr.name));
    if let Some(i) = index {
        segs.push(sql_str(&i.to_string()));
    }
    if with_sub && let Some(s) = t.sub {
        segs.push(sql_str(s.name));
    }
    format!("ARRAY[{}]", segs.join(", "))
}

/// PostgreSQL: the elements a multi-valued `x` holds (`x` itself when it is not an array,
/// as `scim::eval` reads it).
fn pg_elements(x: &str) -> String {
    format!("jsonb_array_elements(CASE WHEN jsonb_typeof({x}) = 'array' THEN {x} ELSE jsonb_build_array({x}) END)")
}

/// PostgreSQL: whether `jsonb` value `x` is of JSON type `ty`; FALSE, never NULL, when `x` is
/// absent (SQLite's `typeof(NULL)` is 'null', PostgreSQL's `jsonb_typeof(NULL)` is NULL).
fn pg_is(x: &str, ty: &str) -> String {
    format!("COALESCE(jsonb_typeof({x}) = '{ty}', FALSE)")
}

/// PostgreSQL: `scim::eval`'s "present" of one `jsonb` value.
fn pg_present(x: &str) -> String {
    format!(
        "({x} IS NOT NULL AND CASE jsonb_typeof({x}) WHEN 'null' THEN FALSE WHEN 'string' THEN {x} <> '\"\"'::jsonb \
         WHEN 'array' THEN {x} <> '[]'::jsonb WHEN 'object' THEN {x} <> '{{}}'::jsonb ELSE TRUE END)"
    )
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
    pub fn new(kind: ResourceKind, surface: Surface, dialect: Dialect) -> Compiler {
        Compiler { kind, surface, dialect, params: Vec::new(), aliases: 0 }
    }

    fn pg(&self) -> bool {
        self.dialect == Dialect::Postgres
    }

    /// The JSON document of the resource row `r` (`jsonb` in PostgreSQL).
    fn body(&self) -> &'static str {
        match (self.surface, self.kind, self.dialect) {
            (Surface::IdpView, _, Dialect::Sqlite) => "r.body",
            (Surface::IdpView, _, Dialect::Postgres) => "CAST(r.body AS jsonb)",
            (Surface::Directory, ResourceKind::User, Dialect::Sqlite) => "r.attributes",
            (Surface::Directory, ResourceKind::User, Dialect::Postgres) => "CAST(r.attributes AS jsonb)",
            (Surface::Directory, ResourceKind::Group, Dialect::Sqlite) => "json_object('displayName', r.name)",
            (Surface::Directory, ResourceKind::Group, Dialect::Postgres) => "jsonb_build_object('displayName', r.name)",
        }
    }

    /// The value at a target's path in the resource.
    fn at(&self, t: &Target, with_sub: bool) -> Scalar {
        let expr = if self.pg() {
            format!("({} #> {})", self.body(), pg_path(t, with_sub))
        } else {
            format!("json_extract({}, '{}')", self.body(), json_path(t, with_sub))
        };
        Scalar { expr, of: Of::Json, folded: false }
    }

    /// The value of key `name` in the JSON value `base` (an element of a multi-valued one).
    fn key(&self, base: &str, name: &str) -> Scalar {
        let expr = if self.pg() { format!("({base} -> {})", sql_str(name)) } else { format!("json_extract({base}, '$.\"{name}\"')") };
        Scalar { expr, of: Of::Json, folded: false }
    }

    /// `FROM` over the elements of a multi-valued target (each as `{alias}.value`).
    fn elements(&self, t: &Target, alias: &str) -> String {
        if self.pg() {
            let x = format!("({} #> {})", self.body(), pg_path(t, false));
            format!("{} AS {alias}(value)", pg_elements(&x))
        } else {
            format!("json_each({}, '{}') {alias}", self.body(), json_path(t, false))
        }
    }

    fn truth(&self, b: bool) -> &'static str {
        if b { "TRUE" } else { "FALSE" }
    }

    pub fn param(&mut self, v: Cell) -> String {
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
        let col = |expr: &str, folded: bool| Some(Scalar::col(expr, Of::Text, folded));
        if self.surface == Surface::Directory {
            return match (self.kind, t.attr.name, t.sub.map(|s| s.name)) {
                (_, "id", None) => col("r.uid", false),
                (ResourceKind::User, "userName", None) => col("r.user_name_fold", true),
                (ResourceKind::User, "active", None) => Some(Scalar::col("r.active", Of::Int, false)),
                (ResourceKind::Group, "displayName", None) => col("r.name_fold", true),
                (_, "meta", Some("created")) => col("r.created", false),
                (ResourceKind::User, "meta", Some("lastModified")) => col("r.modified", false),
                (ResourceKind::Group, "meta", Some("lastModified")) => col("r.created", false),
                (k, "meta", Some("resourceType")) => col(&self.text_literal(k.name()), false),
                _ => None,
            };
        }
        match (self.kind, t.attr.name, t.sub.map(|s| s.name)) {
            (_, "id", None) => col("r.id", false),
            (_, "externalId", None) => col("r.external_id", false),
            (_, "displayName", None) => col("r.display_name_fold", true),
            (ResourceKind::User, "userName", None) => col("r.user_name_fold", true),
            (_, "meta", Some("created")) => col("r.created", false),
            (_, "meta", Some("lastModified")) => col("r.modified", false),
            (k, "meta", Some("resourceType")) => col(&self.text_literal(k.name()), false),
            _ => None,
        }
    }

    /// A string literal typed as text (PostgreSQL leaves a bare literal's type unknown).
    fn text_literal(&self, v: &str) -> String {
        if self.pg() { format!("CAST({} AS TEXT)", sql_str(v)) } else { sql_str(v) }
    }

    fn cmp_target(&mut self, t: &Target, op: CompareOp, lit: &Literal, ctx: Ctx<'_>) -> String {
        let leaf = t.leaf();
        match ctx {
            Ctx::Element(base) => {
                let s = self.key(base, t.attr.name);
                return self.cmp(&s, leaf, op, lit);
            }
            Ctx::Member => {
                let s = self.member_scalar(t.attr.name);
                return self.cmp(&s, leaf, op, lit);
            }
            Ctx::Resource => {}
        }
        if let Some(s) = self.indexed(t) {
            return self.cmp(&s, leaf, op, lit);
        }
        match (self.kind, t.attr.name, t.sub.map(|s| s.name)) {
            (ResourceKind::User, "groups", sub) if t.ext.is_none() && self.surface == Surface::Directory => {
                let s = self.member_scalar(sub.unwrap_or("value"));
                let c = self.cmp(&s, leaf, op, lit);
                self.members_of(&c)
            }
            (ResourceKind::User, "emails", Some("value")) if t.ext.is_none() && self.surface == Surface::IdpView => {
                // `IN` lets SQLite drive the lookup from the email index.
                let s = Scalar::col("e.value_fold", Of::Text, true);
                let c = self.cmp(&s, leaf, op, lit);
                format!("r.pk IN (SELECT e.user_pk FROM user_emails e WHERE {c})")
            }
            (ResourceKind::Group, "members", sub) if t.ext.is_none() => {
                let s = self.member_scalar(sub.unwrap_or("value"));
                self.members_exists(|c| c.cmp(&s, leaf, op, lit), op == CompareOp::Eq && sub.unwrap_or("value") == "value", lit)
            }
            _ if t.attr.multi => {
                let a = self.alias();
                let value = format!("{a}.value");
                let elem = match t.sub {
                    Some(s) => self.key(&value, s.name),
                    None => Scalar { expr: value, of: Of::Json, folded: false },
                };
                let c = self.cmp(&elem, leaf, op, lit);
                format!("EXISTS (SELECT 1 FROM {} WHERE {c})", self.elements(t, &a))
            }
            _ => {
                let s = self.at(t, true);
                self.cmp(&s, leaf, op, lit)
            }
        }
    }

    /// `EXISTS` over the members of group `r`. A plain `value eq "id"` goes through the
    /// user id index and the membership primary key: O(log n) however large the group.
    fn members_exists(&mut self, inner: impl FnOnce(&mut Self) -> String, value_eq: bool, lit: &Literal) -> String {
        if self.surface == Surface::Directory {
            if value_eq && let Literal::Str(id) = lit {
                let p = self.param(Cell::Text(id.clone()));
                return format!("r.id IN (SELECT m.group_id FROM app_memberships m WHERE m.entry_id = (SELECT id FROM entries WHERE uid = {p} AND deleted_at IS NULL))");
            }
            let c = inner(self);
            return self.members_of(&c);
        }
        if value_eq && let Literal::Str(id) = lit {
            let p = self.param(Cell::Text(id.clone()));
            return format!(
                "r.pk IN (SELECT m.group_pk FROM group_members m WHERE m.user_pk = (SELECT pk FROM users WHERE id = {p}))"
            );
        }
        let c = inner(self);
        format!("EXISTS (SELECT 1 FROM group_members m JOIN users mu ON mu.pk = m.user_pk WHERE m.group_pk = r.pk AND {c})")
    }

    /// `EXISTS` over the directory memberships of row `r` (an entry's groups, or an app
    /// group's visible members), joined as `mu`: `c` is a condition on it.
    fn members_of(&self, c: &str) -> String {
        match self.kind {
            ResourceKind::User => format!("EXISTS (SELECT 1 FROM app_memberships m JOIN app_groups mu ON mu.id = m.group_id WHERE m.entry_id = r.id AND {c})"),
            ResourceKind::Group => format!(
                "EXISTS (SELECT 1 FROM app_memberships m JOIN entries mu ON mu.id = m.entry_id WHERE m.group_id = r.id AND mu.deleted_at IS NULL AND {c})"
            ),
        }
    }

    fn any(&mut self, t: &Target, inner: &Typed) -> String {
        if self.surface == Surface::Directory && self.kind == ResourceKind::User && t.attr.name == "groups" && t.ext.is_none() {
            let c = self.compile_in(inner, Ctx::Member);
            return self.members_of(&c);
        }
        if self.kind == ResourceKind::Group && t.attr.name == "members" {
            if let Typed::Cmp(it, CompareOp::Eq, lit @ Literal::Str(_)) = inner
                && it.attr.name == "value"
            {
                let lit = lit.clone();
                return self.members_exists(|_| String::new(), true, &lit);
            }
            return self.members_exists(|c| c.compile_in(inner, Ctx::Member), false, &Literal::Null);
        }
        // `emails[value eq "x" and …]` implies `emails.value eq "x"`: add that as an indexed
        // conjunct so the lookup starts from the email index.
        let mut implied = String::new();
        if self.kind == ResourceKind::User && self.surface == Surface::IdpView && t.ext.is_none() && t.attr.name == "emails" {
            let mut conj = vec![inner];
            while let Some(f) = conj.pop() {
                match f {
                    Typed::And(a, b) => conj.extend([&**a, &**b]),
                    Typed::Cmp(it, CompareOp::Eq, lit @ Literal::Str(_)) if it.attr.name == "value" => {
                        let s = Scalar::col("e.value_fold", Of::Text, true);
                        let c = self.cmp(&s, it.attr, CompareOp::Eq, lit);
                        implied = format!("r.pk IN (SELECT e.user_pk FROM user_emails e WHERE {c}) AND ");
                        break;
                    }
                    _ => {}
                }
            }
        }
        let a = self.alias();
        let base = format!("{a}.value");
        let c = self.compile_in(inner, Ctx::Element(&base));
        let from = if self.pg() {
            // A value path runs over an array's elements, or over one object (as `eval`).
            let x = format!("({} #> {})", self.body(), pg_path(t, false));
            format!("jsonb_array_elements(CASE jsonb_typeof({x}) WHEN 'array' THEN {x} WHEN 'object' THEN jsonb_build_array({x}) ELSE '[]'::jsonb END) AS {a}(value)")
        } else {
            format!("json_each({}, '{}') {a}", self.body(), json_path(t, false))
        };
        format!("({implied}EXISTS (SELECT 1 FROM {from} WHERE {c}))")
    }

    fn present(&mut self, t: &Target, ctx: Ctx<'_>) -> String {
        match ctx {
            Ctx::Element(base) => {
                let e = self.key(base, t.attr.name).expr;
                if self.pg() {
                    return pg_present(&e);
                }
                return format!("({e} IS NOT NULL AND (typeof({e}) <> 'text' OR {e} <> ''))");
            }
            Ctx::Member => {
                let e = self.member_scalar(t.attr.name).expr;
                return format!("({e} IS NOT NULL AND {e} <> '')");
            }
            Ctx::Resource => {}
        }
        if let Some(s) = self.indexed(t) {
            if s.of == Of::Int {
                return format!("({} IS NOT NULL)", s.expr);
            }
            return format!("({e} IS NOT NULL AND {e} <> '')", e = s.expr);
        }
        let body = self.body();
        let directory = self.surface == Surface::Directory;
        match (self.kind, t.attr.name) {
            (ResourceKind::User, "groups") if directory && t.ext.is_none() => {
                let e = self.member_scalar(t.sub.map(|s| s.name).unwrap_or("value")).expr;
                self.members_of(&format!("{e} IS NOT NULL AND {e} <> ''"))
            }
            (ResourceKind::Group, "members") if directory && t.ext.is_none() => {
                let e = self.member_scalar(t.sub.map(|s| s.name).unwrap_or("value")).expr;
                self.members_of(&format!("{e} IS NOT NULL AND {e} <> ''"))
            }
            (ResourceKind::User, "emails") if !directory && t.ext.is_none() && t.sub.is_none_or(|s| s.name == "value") => {
                "EXISTS (SELECT 1 FROM user_emails e WHERE e.user_pk = r.pk AND e.value_fold <> '')".into()
            }
            (ResourceKind::Group, "members") if t.ext.is_none() => {
                let sub = t.sub.map(|s| s.name).unwrap_or("value");
                let e = self.member_scalar(sub).expr;
                format!("EXISTS (SELECT 1 FROM group_members m JOIN users mu ON mu.pk = m.user_pk WHERE m.group_pk = r.pk AND {e} IS NOT NULL AND {e} <> '')")
            }
            _ if self.pg() => {
                // Present when any value it holds is (`eval` reads arrays element by element).
                let a = self.alias();
                let e = match t.sub {
                    Some(s) => self.key(&format!("{a}.value"), s.name).expr,
                    None => format!("{a}.value"),
                };
                format!("EXISTS (SELECT 1 FROM {} WHERE {})", self.elements(t, &a), pg_present(&e))
            }
            _ if t.attr.multi => match t.sub {
                None => format!("coalesce(json_array_length({body}, '{}') > 0, 0)", json_path(t, false)),
                Some(s) => {
                    let a = self.alias();
                    let e = format!("json_extract({a}.value, '$.\"{}\"')", s.name);
                    format!(
                        "EXISTS (SELECT 1 FROM json_each({body}, '{}') {a} WHERE {e} IS NOT NULL AND (typeof({e}) <> 'text' OR {e} <> ''))",
                        json_path(t, false)
                    )
                }
            },
            _ => {
                let p = json_path(t, true);
                format!("(json_type({body}, '{p}') IS NOT NULL AND json_type({body}, '{p}') <> 'null' AND (json_type({body}, '{p}') <> 'text' OR json_extract({body}, '{p}') <> ''))")
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
        if self.pg() {
            return self.cmp_pg(s, leaf, op, sym, lit);
        }
        match lit {
            Literal::Null => "0".into(),
            // `x IS NOT NULL AND …` is never NULL (FALSE AND NULL is FALSE) and, unlike a
            // coalesce() wrapper, leaves `x = ?` visible to the planner for index use.
            Literal::Bool(b) => format!("({e} IS NOT NULL AND {e} {sym} {})", i32::from(*b), e = s.expr),
            Literal::Num(n) => {
                let p = self.param(Cell::Real(*n));
                format!("(typeof({e}) IN ('integer', 'real') AND {e} {sym} {p})", e = s.expr)
            }
            Literal::Str(v) => {
                let substring = matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew);
                // dateTimes compare as instants (canonical strings), never case-folded.
                let fold_it = !leaf.case_exact && (leaf.ty != AttrType::DateTime || substring);
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
                    return format!("({guard})");
                }
                let p = self.param(Cell::Text(v));
                let body = match op {
                    CompareOp::Co => format!("instr({e}, {p}) > 0"),
                    CompareOp::Sw => format!("substr({e}, 1, {n}) = {p}"),
                    CompareOp::Ew => format!("length({e}) >= {n} AND substr({e}, -{n}) = {p}"),
                    _ => format!("{e} {sym} {p}"),
                };
                format!("({guard} AND {body})")
            }
        }
    }

    /// [`Self::cmp`] in PostgreSQL: `jsonb` values tested by `jsonb_typeof`, text compared
    /// in code point order.
    fn cmp_pg(&mut self, s: &Scalar, leaf: &AttrDef, op: CompareOp, sym: &str, lit: &Literal) -> String {
        let e = &s.expr;
        match (lit, s.of) {
            (Literal::Null, _) => "FALSE".into(),
            (Literal::Bool(b), Of::Json) => format!("({} AND {e} {sym} '{b}'::jsonb)", pg_is(e, "boolean")),
            (Literal::Bool(b), Of::Int) => format!("({e} IS NOT NULL AND {e} {sym} {})", i32::from(*b)),
            (Literal::Num(n), Of::Json) => {
                let p = self.param(Cell::Real(*n));
                format!("CASE WHEN jsonb_typeof({e}) = 'number' THEN CAST({e} #>> '{{}}' AS DOUBLE PRECISION) {sym} CAST({p} AS DOUBLE PRECISION) ELSE FALSE END")
            }
            (Literal::Num(n), Of::Int) => {
                let p = self.param(Cell::Real(*n));
                format!("({e} IS NOT NULL AND CAST({e} AS DOUBLE PRECISION) {sym} CAST({p} AS DOUBLE PRECISION))")
            }
            (Literal::Str(v), Of::Json | Of::Text) => {
                let (guard, text) = match s.of {
                    Of::Json => (pg_is(e, "string"), format!("({e} #>> '{{}}')")),
                    _ => (format!("{e} IS NOT NULL"), e.clone()),
                };
                let substring = matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew);
                let fold_it = !leaf.case_exact && (leaf.ty != AttrType::DateTime || substring);
                let (text, v) = match (fold_it, s.folded) {
                    (true, false) => (format!("scim_fold({text})"), fold(v)),
                    (true, true) => (text, fold(v)),
                    (false, _) => (text, v.clone()),
                };
                let n = v.chars().count();
                if substring && n == 0 {
                    return format!("({guard})");
                }
                let p = self.param(Cell::Text(v));
                let body = match op {
                    CompareOp::Co => format!("strpos({text}, {p}) > 0"),
                    CompareOp::Sw => format!("left({text}, {n}) = {p}"),
                    CompareOp::Ew => format!("right({text}, {n}) = {p}"),
                    _ => format!("{text} COLLATE \"C\" {sym} {p}"),
                };
                format!("({guard} AND {body})")
            }
            // A type the value cannot have: nothing matches (as in `eval`).
            _ => self.truth(false).into(),
        }
    }

    /// An ORDER BY expression for `sortBy`.
    pub fn sort_expr(&self, t: &Target) -> String {
        if let Some(s) = self.indexed(t) {
            return s.expr;
        }
        if self.pg() {
            return self.sort_expr_pg(t);
        }
        let expr = if t.attr.multi {
            // Multi-valued: sort by the first value (RFC 7644 leaves the choice to the server).
            let sub = t.sub.map(|s| format!(".\"{}\"", s.name)).unwrap_or_default();
            format!("json_extract({}, '{}[0]{sub}')", self.body(), json_path(t, false))
        } else {
            format!("json_extract({}, '{}')", self.body(), json_path(t, true))
        };
        if t.leaf().case_exact || t.leaf().ty != AttrType::String { expr } else { format!("scim_fold({expr})") }
    }
}

impl Compiler {
    /// [`Self::sort_expr`] in PostgreSQL, by the attribute's type: numbers as numbers,
    /// booleans as booleans, the rest as text in code point order.
    fn sort_expr_pg(&self, t: &Target) -> String {
        let x = if t.attr.multi {
            // Multi-valued: by the first value, as SQLite's sort does.
            format!("({} #> {})", self.body(), pg_path_at(t, Some(0), true))
        } else {
            self.at(t, true).expr
        };
        let leaf = t.leaf();
        match leaf.ty {
            AttrType::Integer | AttrType::Decimal => format!("CASE WHEN jsonb_typeof({x}) = 'number' THEN CAST({x} #>> '{{}}' AS DOUBLE PRECISION) END"),
            AttrType::Boolean => format!("CASE WHEN jsonb_typeof({x}) = 'boolean' THEN CAST({x} #>> '{{}}' AS BOOLEAN) END"),
            _ if leaf.case_exact || leaf.ty != AttrType::String => format!("({x} #>> '{{}}') COLLATE \"C\""),
            _ => format!("scim_fold({x} #>> '{{}}') COLLATE \"C\""),
        }
    }

    /// A sub-attribute of the joined member `mu`: in the IdP view a group's member (a
    /// `users` row); in the directory an app group's member (an entry) or an entry's group.
    fn member_scalar(&self, sub: &str) -> Scalar {
        let expr = match (self.surface, self.kind, sub) {
            (Surface::IdpView, _, "value") => "mu.id",
            (Surface::Directory, _, "value") => "mu.uid",
            (Surface::Directory, ResourceKind::Group, "display") => "mu.user_name",
            (Surface::Directory, ResourceKind::User, "display") => "mu.name",
            (_, ResourceKind::Group, "type") => "'User'",
            (Surface::Directory, ResourceKind::User, "type") => "'direct'",
            _ => "NULL",
        };
        Scalar::col(expr, Of::Text, false)
    }
}

/// The WHERE and ORDER BY of a list query over `users r` or `groups r` for one IdP connection.
pub struct ListSql {
    pub where_: String,
    pub order: String,
    pub params: Vec<Cell>,
}

pub fn list_sql(kind: ResourceKind, idp_id: i64, q: &crate::scim::list::ListQuery, dialect: Dialect) -> ListSql {
    let mut comp = Compiler::new(kind, Surface::IdpView, dialect);
    let filter = q.filter.as_ref().map(|f| comp.compile(f)).unwrap_or_else(|| "TRUE".into());
    let order = match &q.sort_by {
        Some(t) => format!("{} {} NULLS LAST, r.pk", comp.sort_expr(t), if q.descending { "DESC" } else { "ASC" }),
        None => "r.pk".into(),
    };
    let idp = comp.param(Cell::Int(idp_id));
    ListSql { where_: format!("r.idp_id = {idp} AND {filter}"), order, params: comp.params }
}

/// The WHERE and ORDER BY of a list query over the directory of one tenant: `entries r`
/// (visible ones: not soft-deleted) or `app_groups r`.
pub fn directory_sql(kind: ResourceKind, tenant_id: i64, q: &crate::scim::list::ListQuery, dialect: Dialect) -> ListSql {
    let mut comp = Compiler::new(kind, Surface::Directory, dialect);
    let filter = q.filter.as_ref().map(|f| comp.compile(f)).unwrap_or_else(|| "TRUE".into());
    let order = match &q.sort_by {
        Some(t) => format!("{} {} NULLS LAST, r.id", comp.sort_expr(t), if q.descending { "DESC" } else { "ASC" }),
        None => "r.id".into(),
    };
    let tenant = comp.param(Cell::Int(tenant_id));
    let visible = if kind == ResourceKind::User { " AND r.deleted_at IS NULL" } else { "" };
    ListSql { where_: format!("r.tenant_id = {tenant}{visible} AND {filter}"), order, params: comp.params }
}

#[cfg(test)]
mod tests;
