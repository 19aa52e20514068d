//! Compiles typed SCIM filters to SQL, over either stored layer ([`Surface`]): the IdP view
//! (`users`/`groups`, what SCIM clients list) or the directory (`entries`/`app_groups`, what
//! the application lists).
//!
//! The attributes IdPs filter on (id, userName, externalId, displayName, emails.value,
//! members.value) compile to indexed columns and side tables; everything else to SQLite JSON
//! functions over the stored body. Semantics mirror `scim::eval` exactly (see its module doc):
//! each predicate is made NULL-free (`x IS NOT NULL AND …`) so that `not` and `ne` behave as
//! there, and `ne` is compiled as the negation of `eq`.

use rusqlite::types::Value as SqlValue;

use crate::scim::eval::fold;
use crate::scim::filter::{CompareOp, Literal, Target, Typed};
use crate::scim::schema::{AttrDef, AttrType, ResourceKind};

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

/// An expression for a single value, and whether it is already case-folded.
struct Scalar {
    expr: String,
    folded: bool,
}

pub struct Compiler {
    kind: ResourceKind,
    surface: Surface,
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
    pub fn new(kind: ResourceKind, surface: Surface) -> Compiler {
        Compiler { kind, surface, params: Vec::new(), aliases: 0 }
    }

    /// The JSON document of the resource row `r`.
    fn body(&self) -> &'static str {
        match (self.surface, self.kind) {
            (Surface::IdpView, _) => "r.body",
            (Surface::Directory, ResourceKind::User) => "r.attributes",
            (Surface::Directory, ResourceKind::Group) => "json_object('displayName', r.name)",
        }
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
        if self.surface == Surface::Directory {
            return match (self.kind, t.attr.name, t.sub.map(|s| s.name)) {
                (_, "id", None) => col("r.uid", false),
                (ResourceKind::User, "userName", None) => col("r.user_name_fold", true),
                (ResourceKind::User, "active", None) => col("r.active", false),
                (ResourceKind::Group, "displayName", None) => col("r.name_fold", true),
                (_, "meta", Some("created")) => col("r.created", false),
                (ResourceKind::User, "meta", Some("lastModified")) => col("r.modified", false),
                (ResourceKind::Group, "meta", Some("lastModified")) => col("r.created", false),
                (k, "meta", Some("resourceType")) => Some(Scalar { expr: sql_str(k.name()), folded: false }),
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
                let s = self.member_scalar(t.attr.name);
                return self.cmp(&s, leaf, op, lit);
            }
            Ctx::Resource => {}
        }
        if let Some(s) = self.indexed(t) {
            return self.cmp(&s, leaf, op, lit);
        }
        let body = self.body();
        match (self.kind, t.attr.name, t.sub.map(|s| s.name)) {
            (ResourceKind::User, "groups", sub) if t.ext.is_none() && self.surface == Surface::Directory => {
                let s = self.member_scalar(sub.unwrap_or("value"));
                let c = self.cmp(&s, leaf, op, lit);
                self.members_of(&c)
            }
            (ResourceKind::User, "emails", Some("value")) if t.ext.is_none() && self.surface == Surface::IdpView => {
                // `IN` lets SQLite drive the lookup from the email index.
                let s = Scalar { expr: "e.value_fold".into(), folded: true };
                let c = self.cmp(&s, leaf, op, lit);
                format!("r.pk IN (SELECT e.user_pk FROM user_emails e WHERE {c})")
            }
            (ResourceKind::Group, "members", sub) if t.ext.is_none() => {
                let s = self.member_scalar(sub.unwrap_or("value"));
                self.members_exists(|c| c.cmp(&s, leaf, op, lit), op == CompareOp::Eq && sub.unwrap_or("value") == "value", lit)
            }
            _ if t.attr.multi => {
                let a = self.alias();
                let elem = match t.sub {
                    Some(s) => format!("json_extract({a}.value, '$.\"{}\"')", s.name),
                    None => format!("{a}.value"),
                };
                let c = self.cmp(&Scalar { expr: elem, folded: false }, leaf, op, lit);
                format!("EXISTS (SELECT 1 FROM json_each({body}, '{}') {a} WHERE {c})", json_path(t, false))
            }
            _ => {
                let s = Scalar { expr: format!("json_extract({body}, '{}')", json_path(t, true)), folded: false };
                self.cmp(&s, leaf, op, lit)
            }
        }
    }

    /// `EXISTS` over the members of group `r`. A plain `value eq "id"` goes through the
    /// user id index and the membership primary key: O(log n) however large the group.
    fn members_exists(&mut self, inner: impl FnOnce(&mut Self) -> String, value_eq: bool, lit: &Literal) -> String {
        if self.surface == Surface::Directory {
            if value_eq && let Literal::Str(id) = lit {
                let p = self.param(SqlValue::Text(id.clone()));
                return format!("r.id IN (SELECT m.group_id FROM app_memberships m WHERE m.entry_id = (SELECT id FROM entries WHERE uid = {p} AND deleted_at IS NULL))");
            }
            let c = inner(self);
            return self.members_of(&c);
        }
        if value_eq && let Literal::Str(id) = lit {
            let p = self.param(SqlValue::Text(id.clone()));
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
                        let s = Scalar { expr: "e.value_fold".into(), folded: true };
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
        format!("({implied}EXISTS (SELECT 1 FROM json_each({}, '{}') {a} WHERE {c}))", self.body(), json_path(t, false))
    }

    fn present(&mut self, t: &Target, ctx: Ctx<'_>) -> String {
        match ctx {
            Ctx::Element(base) => {
                let e = format!("json_extract({base}, '$.\"{}\"')", t.attr.name);
                return format!("({e} IS NOT NULL AND (typeof({e}) <> 'text' OR {e} <> ''))");
            }
            Ctx::Member => {
                let e = self.member_scalar(t.attr.name).expr;
                return format!("({e} IS NOT NULL AND {e} <> '')");
            }
            Ctx::Resource => {}
        }
        if let Some(s) = self.indexed(t) {
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
        match lit {
            Literal::Null => "0".into(),
            // `x IS NOT NULL AND …` is never NULL (FALSE AND NULL is FALSE) and, unlike a
            // coalesce() wrapper, leaves `x = ?` visible to the planner for index use.
            Literal::Bool(b) => format!("({e} IS NOT NULL AND {e} {sym} {})", i32::from(*b), e = s.expr),
            Literal::Num(n) => {
                let p = self.param(SqlValue::Real(*n));
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
                let p = self.param(SqlValue::Text(v));
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

    /// An ORDER BY expression for `sortBy`.
    pub fn sort_expr(&self, t: &Target) -> String {
        if let Some(s) = self.indexed(t) {
            return s.expr;
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
        Scalar { expr: expr.to_string(), folded: false }
    }
}

/// The WHERE and ORDER BY of a list query over `users r` or `groups r` for one IdP connection.
pub struct ListSql {
    pub where_: String,
    pub order: String,
    pub params: Vec<SqlValue>,
}

pub fn list_sql(kind: ResourceKind, idp_id: i64, q: &crate::scim::list::ListQuery) -> ListSql {
    let mut comp = Compiler::new(kind, Surface::IdpView);
    let filter = q.filter.as_ref().map(|f| comp.compile(f)).unwrap_or_else(|| "1".into());
    let order = match &q.sort_by {
        Some(t) => format!("{} {} NULLS LAST, r.pk", comp.sort_expr(t), if q.descending { "DESC" } else { "ASC" }),
        None => "r.pk".into(),
    };
    let idp = comp.param(SqlValue::Integer(idp_id));
    ListSql { where_: format!("r.idp_id = {idp} AND {filter}"), order, params: comp.params }
}

/// The WHERE and ORDER BY of a list query over the directory of one tenant: `entries r`
/// (visible ones: not soft-deleted) or `app_groups r`.
pub fn directory_sql(kind: ResourceKind, tenant_id: i64, q: &crate::scim::list::ListQuery) -> ListSql {
    let mut comp = Compiler::new(kind, Surface::Directory);
    let filter = q.filter.as_ref().map(|f| comp.compile(f)).unwrap_or_else(|| "1".into());
    let order = match &q.sort_by {
        Some(t) => format!("{} {} NULLS LAST, r.id", comp.sort_expr(t), if q.descending { "DESC" } else { "ASC" }),
        None => "r.id".into(),
    };
    let tenant = comp.param(SqlValue::Integer(tenant_id));
    let visible = if kind == ResourceKind::User { " AND r.deleted_at IS NULL" } else { "" };
    ListSql { where_: format!("r.tenant_id = {tenant}{visible} AND {filter}"), order, params: comp.params }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::scim::list::ListParams;

    fn plan(conn: &rusqlite::Connection, kind: ResourceKind, filter: &str) -> Vec<String> {
        let q = ListParams { filter: Some(filter.into()), ..Default::default() }.resolve(kind).unwrap();
        let sql = list_sql(kind, 1, &q);
        let table = if kind == ResourceKind::User { "users" } else { "groups" };
        let mut st = conn.prepare(&format!("EXPLAIN QUERY PLAN SELECT r.pk FROM {table} r WHERE {}", sql.where_)).unwrap();
        st.query_map(rusqlite::params_from_iter(sql.params.iter()), |r| r.get::<_, String>(3)).unwrap().map(Result::unwrap).collect()
    }

    /// The filters IdPs send on every sync are answered from indexes: the resource table is
    /// never scanned, neither whole nor over all of one connection's rows.
    #[test]
    fn idp_filters_are_index_lookups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        drop(super::super::SqliteStore::open(&path, Default::default()).unwrap());
        let conn = super::super::open(&path, Default::default(), false).unwrap();
        let cases = [
            (ResourceKind::User, r#"userName eq "a@b.c""#, "users_user_name"),
            (ResourceKind::User, r#"externalId eq "x""#, "users_external (idp_id=? AND external_id=?)"),
            (ResourceKind::User, r#"displayName eq "x""#, "users_display (idp_id=? AND display_name_fold=?)"),
            (ResourceKind::User, r#"id eq "x""#, "(id=?)"),
            (ResourceKind::User, r#"emails.value eq "a@b.c""#, "USING INTEGER PRIMARY KEY"),
            (ResourceKind::User, r#"emails[type eq "work" and value eq "a@b.c"]"#, "USING INTEGER PRIMARY KEY"),
            (ResourceKind::Group, r#"displayName eq "x""#, "groups_display (idp_id=? AND display_name_fold=?)"),
            (ResourceKind::Group, r#"externalId eq "x""#, "groups_external (idp_id=? AND external_id=?)"),
            (ResourceKind::Group, r#"members.value eq "u""#, "USING INTEGER PRIMARY KEY"),
            (ResourceKind::Group, r#"id eq "g" and members[value eq "u"]"#, "(id=?)"),
        ];
        for (kind, f, want) in cases {
            let p = plan(&conn, kind, f);
            let text = p.join(" | ");
            assert!(!p.iter().any(|l| l.starts_with("SCAN r")), "{f}: full scan: {text}");
            assert!(!p.iter().any(|l| l.starts_with("SEARCH r") && l.ends_with("(idp_id=?)")), "{f}: scans the connection: {text}");
            assert!(text.contains(want), "{f}: expected {want}: {text}");
        }
    }

    /// The in-memory evaluator (PATCH value paths, `scim::eval`) and the SQL compiled for list
    /// filters select the same users, for random filters over a population with the awkward
    /// cases (case folding, accents, empty strings, missing attributes, multi-valued emails).
    mod agrees_with_eval {
        use proptest::prelude::*;
        use serde_json::{Value, json};

        use super::*;
        use crate::scim::filter::Filter;

        fn population() -> Vec<Value> {
            vec![
                json!({"userName": "alice@acme.com", "externalId": "ext-1", "displayName": "Alice Adams", "title": "Engineer", "userType": "Employee", "active": true,
                       "name": {"givenName": "Alice", "familyName": "Adams"},
                       "emails": [{"value": "alice@acme.com", "type": "work", "primary": true}, {"value": "alice@home.org", "type": "home"}],
                       "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Engineering"}}),
                json!({"userName": "Bob@Acme.com", "externalId": "ext-2", "displayName": "Bob Brown", "userType": "Intern", "active": false,
                       "name": {"givenName": "Bob", "familyName": "O'Brown"}, "emails": [{"value": "bob@acme.com", "type": "work"}],
                       "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Sales"}}),
                json!({"userName": "chloé@other.org", "displayName": "Chloé Çelik", "title": "", "active": true, "emails": [{"value": "CHLOE@OTHER.ORG", "type": "home"}]}),
                json!({"userName": "dan", "active": true}),
            ]
        }

        /// A database holding the population as the store writes it, and each user as a
        /// rendered resource (what `eval::matches` sees).
        fn fixture() -> (tempfile::TempDir, rusqlite::Connection, Vec<(String, Value)>) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("t.db");
            drop(super::super::super::SqliteStore::open(&path, Default::default()).unwrap());
            let conn = super::super::super::open(&path, Default::default(), true).unwrap();
            conn.execute_batch(
                "INSERT INTO tenants (id, name, created) VALUES (1, 't', 'x');
                 INSERT INTO idps (id, tenant_id, name, kind, rate_per_sec, burst, created) VALUES (1, 1, 'i', 'generic', 0, 0, 'x');",
            )
            .unwrap();
            let mut resources = Vec::new();
            for (k, body) in population().into_iter().enumerate() {
                let ix = super::super::super::users::index_for_tests(&body);
                let (id, created) = (format!("id-{k}"), format!("2026-01-0{}T00:00:00.000Z", k + 1));
                conn.execute(
                    "INSERT INTO entries (id, tenant_id, user_name, user_name_fold, active, attributes, created, modified, uid) VALUES (?1, 1, ?2, ?2, 1, '{}', 'x', 'x', ?2)",
                    rusqlite::params![k as i64 + 1, id],
                )
                .unwrap();
                conn.execute(
                    "INSERT INTO users (pk, idp_id, id, entry_id, user_name_fold, external_id, display_name_fold, active, body, created, modified, version)
                     VALUES (?1, 1, ?2, ?1, ?3, ?4, ?5, ?6, ?7, ?8, ?8, 1)",
                    rusqlite::params![k as i64 + 1, id, fold(&ix.0), ix.1, ix.2, ix.3, body.to_string(), created],
                )
                .unwrap();
                for e in ix.4 {
                    conn.execute("INSERT INTO user_emails (value_fold, user_pk) VALUES (?1, ?2)", rusqlite::params![e, k as i64 + 1]).unwrap();
                }
                let mut r = body.clone();
                r["id"] = json!(id);
                r["meta"] = json!({"resourceType": "User", "created": created, "lastModified": created});
                resources.push((id, r));
            }
            (dir, conn, resources)
        }

        const STRINGS: &[&str] = &[
            "\"alice@acme.com\"", "\"BOB@ACME.COM\"", "\"Engineer\"", "\"\"", "\"a\"", "\"@acme.com\"", "\"chloé\"", "\"CHLOÉ\"", "\"work\"",
            "\"Sales\"", "\"id-1\"", "\"2026-01-02T00:00:00Z\"", "null",
        ];
        const OPS: &[&str] = &["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"];

        /// One comparison, typed sensibly most of the time (a string attribute with a string,
        /// a boolean with a boolean) so that most filters resolve and reach both engines.
        fn compare(strings: Vec<&'static str>, booleans: Vec<&'static str>) -> BoxedStrategy<String> {
            let strings = prop::sample::select(strings);
            let booleans = prop::sample::select(booleans);
            prop_oneof![
                4 => (strings.clone(), prop::sample::select(OPS.to_vec()), prop::sample::select(STRINGS.to_vec())).prop_map(|(p, o, v)| format!("{p} {o} {v}")),
                1 => (booleans.clone(), prop::sample::select(vec!["eq", "ne"]), prop::sample::select(vec!["true", "false", "null"])).prop_map(|(p, o, v)| format!("{p} {o} {v}")),
                1 => prop_oneof![strings, booleans].prop_map(|p| format!("{p} pr")),
            ]
            .boxed()
        }

        fn arb_filter() -> impl Strategy<Value = String> {
            let top = compare(
                vec![
                    "userName", "displayName", "title", "externalId", "userType", "name.givenName", "name.familyName", "emails.value", "emails.type",
                    "meta.created", "id", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "nickName",
                ],
                vec!["active", "emails.primary"],
            );
            // A value path over emails: conditions on its sub-attributes.
            let element = compare(vec!["value", "type", "display"], vec!["primary"]);
            let value_path = (element.clone(), element, any::<bool>()).prop_map(|(a, b, and)| format!("emails[{a} {} {b}]", if and { "and" } else { "or" }));
            let leaf = prop_oneof![4 => top, 1 => value_path];
            leaf.prop_recursive(3, 12, 2, |inner| {
                prop_oneof![
                    (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} and {b})")),
                    (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} or {b})")),
                    inner.prop_map(|a| format!("not ({a})")),
                ]
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
            #[test]
            fn the_same_users_match(f in arb_filter()) {
                thread_local! { static FIXTURE: (tempfile::TempDir, rusqlite::Connection, Vec<(String, Value)>) = fixture(); }
                // Filters the resolver refuses (a value path over something that is not
                // multi-valued, a comparison that cannot be typed) are errors in both places.
                let Ok(typed) = Filter::parse(&f).and_then(|p| p.resolve(ResourceKind::User)) else { return Ok(()) };
                FIXTURE.with(|(_, conn, resources)| {
                    let mut in_memory: Vec<&str> = resources.iter().filter(|(_, r)| crate::scim::eval::matches(&typed, r)).map(|(id, _)| id.as_str()).collect();
                    let q = crate::scim::list::ListQuery { filter: Some(typed.clone()), sort_by: None, descending: false, start_index: 1, count: 100, projection: Default::default() };
                    let sql = list_sql(ResourceKind::User, 1, &q);
                    let mut st = conn.prepare(&format!("SELECT r.id FROM users r WHERE {}", sql.where_)).unwrap();
                    let mut in_sql: Vec<String> = st.query_map(rusqlite::params_from_iter(sql.params.iter()), |r| r.get(0)).unwrap().map(Result::unwrap).collect();
                    in_memory.sort();
                    in_sql.sort();
                    prop_assert_eq!(in_memory, in_sql, "{}", f);
                    Ok(())
                })?;
            }
        }
    }
}
