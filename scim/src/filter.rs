//! The RFC 7644 §3.4.2.2 filter language: parse, print, and resolve against the schema.
//!
//! Parsing gives an untyped [`Filter`]; [`Filter::resolve`] checks every path against the
//! schema and gives a [`Typed`] filter with canonical attribute definitions. The in-memory
//! evaluator (PATCH value paths) and the SQL compiler (list queries) both consume `Typed`, so
//! case sensitivity and multi-valued semantics are decided in exactly one place.

use std::fmt;

use super::error::{ScimError, ScimResult};
use super::schema::{self, AttrDef, AttrType, ResourceKind};

/// An attribute path as written: `[urn:]attr[.sub]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AttrPath {
    pub urn: Option<String>,
    pub attr: String,
    pub sub: Option<String>,
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(u) = &self.urn {
            write!(f, "{u}:")?;
        }
        f.write_str(&self.attr)?;
        if let Some(s) = &self.sub {
            write!(f, ".{s}")?;
        }
        Ok(())
    }
}

impl AttrPath {
    /// Parses `urn:...:attr.sub`, `attr.sub` or `attr`.
    pub fn parse(text: &str) -> ScimResult<AttrPath> {
        let bad = || ScimError::invalid_path(format!("'{text}' is not a valid attribute path"));
        let (urn, rest) = if crate::schema::has_urn_prefix(text) {
            let i = text.rfind(':').ok_or_else(bad)?;
            (Some(text[..i].to_string()), &text[i + 1..])
        } else {
            (None, text)
        };
        let mut parts = rest.splitn(2, '.');
        let attr = parts.next().unwrap_or_default();
        let sub = parts.next();
        let valid = |s: &str| {
            let mut chars = s.chars();
            matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '$')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
        };
        if !valid(attr) || sub.is_some_and(|s| !valid(s)) {
            return Err(bad());
        }
        Ok(AttrPath { urn, attr: attr.to_string(), sub: sub.map(str::to_string) })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CompareOp {
    fn parse(word: &str) -> Option<CompareOp> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => CompareOp::Eq,
            "ne" => CompareOp::Ne,
            "co" => CompareOp::Co,
            "sw" => CompareOp::Sw,
            "ew" => CompareOp::Ew,
            "gt" => CompareOp::Gt,
            "ge" => CompareOp::Ge,
            "lt" => CompareOp::Lt,
            "le" => CompareOp::Le,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }
}

/// A comparison value as written.
#[derive(Debug, Clone, PartialEq)]
pub enum CompValue {
    Str(String),
    Num(serde_json::Number),
    Bool(bool),
    Null,
}

impl fmt::Display for CompValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompValue::Str(s) => write!(f, "{}", serde_json::Value::String(s.clone())),
            CompValue::Num(n) => write!(f, "{n}"),
            CompValue::Bool(b) => write!(f, "{b}"),
            CompValue::Null => f.write_str("null"),
        }
    }
}

/// A parsed, untyped filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Compare(AttrPath, CompareOp, CompValue),
    Present(AttrPath),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    /// `attr[filter]`: some element of the multi-valued `attr` matches `filter`.
    ValuePath(AttrPath, Box<Filter>),
}

impl fmt::Display for Filter {
    /// Prints with the parentheses the tree needs and no more, so the output re-parses to the
    /// same tree and is never nested deeper than the text it was parsed from (the parser
    /// limits nesting).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.print(f, 0)
    }
}

impl Filter {
    /// Binding strength: `or` < `and` < everything else.
    fn precedence(&self) -> u8 {
        match self {
            Filter::Or(..) => 1,
            Filter::And(..) => 2,
            _ => 3,
        }
    }

    /// Prints in parentheses when this node binds looser than its position requires.
    /// Both operators associate to the left, so a right operand needs one level more.
    fn print(&self, f: &mut fmt::Formatter<'_>, min: u8) -> fmt::Result {
        let wrap = self.precedence() < min;
        if wrap {
            f.write_str("(")?;
        }
        match self {
            Filter::Compare(p, op, v) => write!(f, "{p} {} {v}", op.as_str())?,
            Filter::Present(p) => write!(f, "{p} pr")?,
            Filter::And(a, b) | Filter::Or(a, b) => {
                let (prec, word) = if matches!(self, Filter::And(..)) { (2, " and ") } else { (1, " or ") };
                a.print(f, prec)?;
                f.write_str(word)?;
                b.print(f, prec + 1)?;
            }
            Filter::Not(a) => write!(f, "not ({a})")?,
            Filter::ValuePath(p, inner) => write!(f, "{p}[{inner}]")?,
        }
        if wrap {
            f.write_str(")")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Num(serde_json::Number),
    /// A run of characters that is neither a word, a number nor a string literal: an unquoted
    /// value (`5fb3c…` ids, `jdoe@acme.com`), or `.sub` after a value filter.
    Bare(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
}

fn is_word(s: &str) -> bool {
    let mut chars = s.bytes();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == b'$' || c == b'_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'$' | b':' | b'.'))
}

fn lex(input: &str) -> ScimResult<Vec<Tok>> {
    let mut out = Vec::new();
    let bytes = input.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'(' => (out.push(Tok::LParen), i += 1).1,
            b')' => (out.push(Tok::RParen), i += 1).1,
            b'[' => (out.push(Tok::LBracket), i += 1).1,
            b']' => (out.push(Tok::RBracket), i += 1).1,
            b'"' => {
                // A JSON string literal; serde_json handles the escapes.
                let start = i;
                i += 1;
                let mut escaped = false;
                loop {
                    let Some(&ch) = bytes.get(i) else {
                        return Err(ScimError::invalid_filter("unterminated string literal"));
                    };
                    i += 1;
                    if escaped {
                        escaped = false;
                    } else if ch == b'\\' {
                        escaped = true;
                    } else if ch == b'"' {
                        break;
                    }
                }
                let s: String = serde_json::from_str(&input[start..i])
                    .map_err(|e| ScimError::invalid_filter(format!("bad string literal: {e}")))?;
                out.push(Tok::Str(s));
            }
            _ => {
                // Anything else runs to the next space, parenthesis, bracket or quote; what it
                // is depends on what it looks like (the parser decides where each may stand).
                let start = i;
                while i < bytes.len() && !matches!(bytes[i], b' ' | b'\t' | b'\n' | b'\r' | b'(' | b')' | b'[' | b']' | b'"') {
                    i += 1;
                }
                let run = &input[start..i];
                let number = matches!(c, b'-' | b'0'..=b'9').then(|| run.parse::<serde_json::Number>().ok()).flatten();
                out.push(match number {
                    Some(n) => Tok::Num(n),
                    None if is_word(run) => Tok::Word(run.to_string()),
                    None => Tok::Bare(run.to_string()),
                });
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Parser (recursive descent; precedence not > and > or)

/// Nesting deeper than this is refused, so a hostile filter cannot overflow the stack.
const MAX_DEPTH: usize = 64;

/// Attribute expressions per filter. Without a cap a flat chain of `or`s builds a tree as
/// deep as it is long, and every recursive walk of it (resolve, evaluate, SQL, drop) could
/// overflow the stack; real IdP filters have a handful.
pub const MAX_CLAUSES: usize = 256;

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
    clauses: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn peek_keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }
    fn expect(&mut self, t: Tok, what: &str) -> ScimResult<()> {
        match self.next() {
            Some(ref got) if *got == t => Ok(()),
            Some(got) => Err(ScimError::invalid_filter(format!("expected {what}, found {got:?}"))),
            None => Err(ScimError::invalid_filter(format!("expected {what}, found end of filter"))),
        }
    }

    fn or_expr(&mut self, in_brackets: bool) -> ScimResult<Filter> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ScimError::invalid_filter("filter is nested too deeply"));
        }
        let mut left = self.and_expr(in_brackets)?;
        while self.peek_keyword("or") {
            self.pos += 1;
            let right = self.and_expr(in_brackets)?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        self.depth -= 1;
        Ok(left)
    }

    fn and_expr(&mut self, in_brackets: bool) -> ScimResult<Filter> {
        let mut left = self.unary(in_brackets)?;
        while self.peek_keyword("and") {
            self.pos += 1;
            let right = self.unary(in_brackets)?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self, in_brackets: bool) -> ScimResult<Filter> {
        if self.peek_keyword("not") && matches!(self.toks.get(self.pos + 1), Some(Tok::LParen)) {
            self.pos += 2;
            let inner = self.or_expr(in_brackets)?;
            self.expect(Tok::RParen, "')'")?;
            return Ok(Filter::Not(Box::new(inner)));
        }
        match self.next() {
            Some(Tok::LParen) => {
                let inner = self.or_expr(in_brackets)?;
                self.expect(Tok::RParen, "')'")?;
                Ok(inner)
            }
            Some(Tok::Word(w)) => {
                self.clauses += 1;
                if self.clauses > MAX_CLAUSES {
                    return Err(ScimError::invalid_filter(format!("filter has too many clauses (at most {MAX_CLAUSES})")));
                }
                let path = AttrPath::parse(&w).map_err(|e| ScimError::invalid_filter(e.detail))?;
                if matches!(self.peek(), Some(Tok::LBracket)) {
                    if in_brackets {
                        return Err(ScimError::invalid_filter("value filters cannot be nested"));
                    }
                    if path.sub.is_some() {
                        return Err(ScimError::invalid_filter(format!("'{w}[...]': a value filter applies to an attribute, not a sub-attribute")));
                    }
                    self.pos += 1;
                    let inner = self.or_expr(true)?;
                    self.expect(Tok::RBracket, "']'")?;
                    // `emails[type eq "work"].value eq "x"` (Entra matches by work email): the
                    // same element must match both, so it is `emails[type eq "work" and value eq "x"]`.
                    if let Some(Tok::Bare(b)) = self.peek()
                        && let Some(sub) = b.strip_prefix('.')
                    {
                        let sub = AttrPath::parse(sub).ok().filter(|p| p.urn.is_none() && p.sub.is_none()).ok_or_else(|| ScimError::invalid_filter(format!("'{w}[...]{b}': expected a sub-attribute after the value filter")))?;
                        self.pos += 1;
                        let tail = self.attr_expr(sub)?;
                        return Ok(Filter::ValuePath(path, Box::new(Filter::And(Box::new(inner), Box::new(tail)))));
                    }
                    return Ok(Filter::ValuePath(path, Box::new(inner)));
                }
                self.attr_expr(path)
            }
            Some(t) => Err(ScimError::invalid_filter(format!("expected an attribute path, found {t:?}"))),
            None => Err(ScimError::invalid_filter("unexpected end of filter")),
        }
    }

    fn attr_expr(&mut self, path: AttrPath) -> ScimResult<Filter> {
        let op = match self.next() {
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("pr") => return Ok(Filter::Present(path)),
            Some(Tok::Word(w)) => CompareOp::parse(&w)
                .ok_or_else(|| ScimError::invalid_filter(format!("unknown operator '{w}'")))?,
            Some(t) => return Err(ScimError::invalid_filter(format!("expected an operator after '{path}', found {t:?}"))),
            None => return Err(ScimError::invalid_filter(format!("expected an operator after '{path}'"))),
        };
        let value = match self.next() {
            Some(Tok::Str(s)) => CompValue::Str(s),
            Some(Tok::Num(n)) => CompValue::Num(n),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("true") => CompValue::Bool(true),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("false") => CompValue::Bool(false),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("null") => CompValue::Null,
            // An unquoted value, as Entra writes some (`externalId eq jyoung`): a string,
            // unless it reads as a keyword of the grammar.
            Some(Tok::Word(w)) if ["and", "or", "not", "pr"].iter().any(|k| w.eq_ignore_ascii_case(k)) => {
                return Err(ScimError::invalid_filter(format!("expected a value after '{path} {}', found the keyword '{w}' (quote a value that is a keyword)", op.as_str())));
            }
            Some(Tok::Word(w) | Tok::Bare(w)) => CompValue::Str(w),
            Some(t) => return Err(ScimError::invalid_filter(format!("expected a value after '{path} {}', found {t:?}", op.as_str()))),
            None => return Err(ScimError::invalid_filter(format!("expected a value after '{path} {}'", op.as_str()))),
        };
        Ok(Filter::Compare(path, op, value))
    }
}

impl Filter {
    /// Parses a complete filter expression.
    pub fn parse(input: &str) -> ScimResult<Filter> {
        let mut p = Parser { toks: lex(input)?, pos: 0, depth: 0, clauses: 0 };
        if p.toks.is_empty() {
            return Err(ScimError::invalid_filter("empty filter"));
        }
        let f = p.or_expr(false)?;
        if let Some(t) = p.peek() {
            return Err(ScimError::invalid_filter(format!("unexpected {t:?} after a complete expression")));
        }
        Ok(f)
    }

    /// Parses the filter inside a PATCH value path (`members[value eq "x"]`), whose paths are
    /// relative to the elements of the multi-valued attribute.
    pub fn parse_value_filter(input: &str) -> ScimResult<Filter> {
        let mut p = Parser { toks: lex(input)?, pos: 0, depth: 0, clauses: 0 };
        let f = p.or_expr(true)?;
        if let Some(t) = p.peek() {
            return Err(ScimError::invalid_filter(format!("unexpected {t:?} in value filter")));
        }
        Ok(f)
    }
}

// ---------------------------------------------------------------------------------------------
// Resolution against the schema

/// An attribute a typed filter compares: a top-level attribute and optionally a sub-attribute.
/// Inside a value filter (`emails[...]`), `attr` is the sub-attribute and `sub` is `None`.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub ext: Option<&'static str>,
    pub attr: &'static AttrDef,
    pub sub: Option<&'static AttrDef>,
}

impl Target {
    /// The definition whose value is compared.
    pub fn leaf(&self) -> &'static AttrDef {
        self.sub.unwrap_or(self.attr)
    }
}

/// A comparison literal, already converted to the compared attribute's type.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(String),
    Bool(bool),
    Num(f64),
    Null,
}

#[derive(Debug, Clone)]
pub enum Typed {
    Cmp(Target, CompareOp, Literal),
    Present(Target),
    And(Box<Typed>, Box<Typed>),
    Or(Box<Typed>, Box<Typed>),
    Not(Box<Typed>),
    /// Some element of the multi-valued complex attribute matches the inner filter.
    Any(Target, Box<Typed>),
}

/// Canonical form of a dateTime (RFC 3339, UTC, milliseconds), so that string order is time order.
pub fn canonical_datetime(s: &str) -> Option<String> {
    let t = chrono::DateTime::parse_from_rfc3339(s).ok()?;
    Some(t.with_timezone(&chrono::Utc).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

fn literal_for(def: &AttrDef, op: CompareOp, v: &CompValue, shown: &str) -> ScimResult<Literal> {
    let bad = |why: &str| ScimError::invalid_filter(format!("'{shown}': {why}"));
    let ordering = matches!(op, CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le);
    let substring = matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew);
    if matches!(v, CompValue::Null) {
        return if matches!(op, CompareOp::Eq | CompareOp::Ne) { Ok(Literal::Null) } else { Err(bad("null only compares with eq or ne")) };
    }
    match def.ty {
        AttrType::Boolean => {
            if ordering || substring {
                return Err(bad("boolean attributes only support eq and ne"));
            }
            match v {
                CompValue::Bool(b) => Ok(Literal::Bool(*b)),
                CompValue::Str(s) if s.eq_ignore_ascii_case("true") => Ok(Literal::Bool(true)),
                CompValue::Str(s) if s.eq_ignore_ascii_case("false") => Ok(Literal::Bool(false)),
                _ => Err(bad("expected true or false")),
            }
        }
        AttrType::Binary if ordering => Err(bad("binary attributes cannot be ordered")),
        AttrType::Integer | AttrType::Decimal => {
            if substring {
                return Err(bad("numbers do not support co, sw or ew"));
            }
            match v {
                CompValue::Num(n) => Ok(Literal::Num(n.as_f64().unwrap_or(f64::NAN))),
                _ => Err(bad("expected a number")),
            }
        }
        AttrType::DateTime => match v {
            CompValue::Str(s) if !substring => {
                canonical_datetime(s).map(Literal::Str).ok_or_else(|| bad("expected an RFC 3339 dateTime"))
            }
            CompValue::Str(s) => Ok(Literal::Str(s.clone())),
            _ => Err(bad("expected a dateTime string")),
        },
        AttrType::Complex => Err(bad("a complex attribute needs a sub-attribute to compare")),
        _ => match v {
            CompValue::Str(s) => Ok(Literal::Str(s.clone())),
            // Lenient: `externalId eq 123` means the string "123".
            CompValue::Num(n) => Ok(Literal::Str(n.to_string())),
            CompValue::Bool(_) => Err(bad("expected a string")),
            CompValue::Null => Ok(Literal::Null),
        },
    }
}

fn resolve_target(kind: ResourceKind, p: &AttrPath, for_compare: bool) -> ScimResult<Target> {
    let loc = schema::locate(kind, p.urn.as_deref(), &p.attr)
        .ok_or_else(|| ScimError::invalid_filter(format!("unknown attribute '{p}'")))?;
    let sub = match &p.sub {
        Some(s) => Some(
            schema::find(loc.def.sub, s)
                .ok_or_else(|| ScimError::invalid_filter(format!("unknown sub-attribute '{p}'")))?,
        ),
        // `emails eq "x"` compares the primary value sub-attribute of each element.
        None if for_compare && loc.def.ty == AttrType::Complex && loc.def.multi => schema::find(loc.def.sub, "value"),
        None => None,
    };
    Ok(Target { ext: loc.extension, attr: loc.def, sub })
}

impl Filter {
    /// Types this filter against the schema of `kind`.
    pub fn resolve(&self, kind: ResourceKind) -> ScimResult<Typed> {
        self.resolve_in(kind, None)
    }

    /// Types a value filter (`attr[...]`) whose paths name sub-attributes of `parent`.
    pub fn resolve_element(&self, kind: ResourceKind, parent: &'static AttrDef) -> ScimResult<Typed> {
        self.resolve_in(kind, Some(parent))
    }

    /// `element`: inside `attr[...]`, the multi-valued attribute whose sub-attributes paths name.
    fn resolve_in(&self, kind: ResourceKind, element: Option<&'static AttrDef>) -> ScimResult<Typed> {
        let target = |p: &AttrPath, cmp: bool| -> ScimResult<Target> {
            match element {
                None => resolve_target(kind, p, cmp),
                Some(parent) => {
                    if p.urn.is_some() || p.sub.is_some() {
                        return Err(ScimError::invalid_filter(format!("'{p}': paths inside a value filter name sub-attributes of '{}'", parent.name)));
                    }
                    let def = schema::find(parent.sub, &p.attr).ok_or_else(|| {
                        ScimError::invalid_filter(format!("'{}' has no sub-attribute '{}'", parent.name, p.attr))
                    })?;
                    Ok(Target { ext: None, attr: def, sub: None })
                }
            }
        };
        Ok(match self {
            Filter::Compare(p, op, v) => {
                let t = target(p, true)?;
                let shown = format!("{p} {} {v}", op.as_str());
                Typed::Cmp(t, *op, literal_for(t.leaf(), *op, v, &shown)?)
            }
            Filter::Present(p) => Typed::Present(target(p, false)?),
            Filter::And(a, b) => Typed::And(Box::new(a.resolve_in(kind, element)?), Box::new(b.resolve_in(kind, element)?)),
            Filter::Or(a, b) => Typed::Or(Box::new(a.resolve_in(kind, element)?), Box::new(b.resolve_in(kind, element)?)),
            Filter::Not(a) => Typed::Not(Box::new(a.resolve_in(kind, element)?)),
            Filter::ValuePath(p, inner) => {
                let t = resolve_target(kind, p, false)?;
                if t.attr.ty != AttrType::Complex || !t.attr.multi {
                    return Err(ScimError::invalid_filter(format!("'{p}[...]': only multi-valued complex attributes take a value filter")));
                }
                Typed::Any(t, Box::new(inner.resolve_in(kind, Some(t.attr))?))
            }
        })
    }
}

#[cfg(test)]
mod tests;
