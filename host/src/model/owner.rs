//! Who holds a membership, and who set an attribute: the reason a sync may or may not take
//! it away. A membership is one row per (app group, entry, owner), so two owners co-own it and
//! it lasts while any of them holds it; an attribute has exactly one owner.

use std::fmt;

/// The holder of one app-group membership of a directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Owner {
    /// Membership of an IdP group (its storage key) that maps to the app group: the IdP
    /// group's member changes grant and revoke it.
    IdpGroup(i64),
    /// Granted by an IdP connection's rules (by connection id): only those rules revoke it.
    Rules(i64),
    /// Granted in the application (or kept by an admin's decision): no sync removes it.
    Local,
    /// Taken away by an IdP past its guard's cap and held for an admin (the held operation's
    /// id): only the decision settles it.
    Held(i64),
}

/// The kind of an [`Owner`], as reports name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OwnerKind {
    /// [`Owner::IdpGroup`]
    IdpGroup,
    /// [`Owner::Rules`]
    Rule,
    /// [`Owner::Local`]
    Local,
    /// [`Owner::Held`]
    Held,
}

/// A stored owner that is none of the known forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown membership owner {0:?}")]
pub struct UnknownOwner(pub String);

impl Owner {
    /// The stored prefix of [`Owner::IdpGroup`]: SQL that derives an owner from a group's key
    /// builds it as `'g:' || pk`.
    pub const IDP_GROUP_PREFIX: &'static str = "g:";
    /// The stored prefix of [`Owner::Rules`].
    pub const RULES_PREFIX: &'static str = "rule:";
    /// The stored form of [`Owner::Local`].
    pub const LOCAL: &'static str = "local";
    /// The stored prefix of [`Owner::Held`].
    pub const HELD_PREFIX: &'static str = "held:";

    /// The kind, as reports name it.
    pub fn kind(self) -> OwnerKind {
        match self {
            Owner::IdpGroup(_) => OwnerKind::IdpGroup,
            Owner::Rules(_) => OwnerKind::Rule,
            Owner::Local => OwnerKind::Local,
            Owner::Held(_) => OwnerKind::Held,
        }
    }

    /// Reads a stored owner.
    ///
    /// ```
    /// use mapwright::model::Owner;
    /// assert_eq!(Owner::parse("g:12"), Ok(Owner::IdpGroup(12)));
    /// assert_eq!(Owner::parse(&Owner::Rules(3).to_string()), Ok(Owner::Rules(3)));
    /// assert!(Owner::parse("g:x").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Owner, UnknownOwner> {
        let id = |rest: &str| rest.parse::<i64>().map_err(|_| UnknownOwner(text.to_string()));
        if text == Owner::LOCAL {
            Ok(Owner::Local)
        } else if let Some(rest) = text.strip_prefix(Owner::IDP_GROUP_PREFIX) {
            id(rest).map(Owner::IdpGroup)
        } else if let Some(rest) = text.strip_prefix(Owner::RULES_PREFIX) {
            id(rest).map(Owner::Rules)
        } else if let Some(rest) = text.strip_prefix(Owner::HELD_PREFIX) {
            id(rest).map(Owner::Held)
        } else {
            Err(UnknownOwner(text.to_string()))
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::IdpGroup(pk) => write!(f, "{}{pk}", Owner::IDP_GROUP_PREFIX),
            Owner::Rules(idp) => write!(f, "{}{idp}", Owner::RULES_PREFIX),
            Owner::Local => f.write_str(Owner::LOCAL),
            Owner::Held(id) => write!(f, "{}{id}", Owner::HELD_PREFIX),
        }
    }
}

/// Who set one attribute of a directory entry: the writer that owns it replaces it, others
/// leave it alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttrOwner {
    /// An IdP connection's writes (by connection id).
    Idp(i64),
    /// The application: no IdP write or re-apply replaces it.
    Local,
}

impl AttrOwner {
    const IDP_PREFIX: &'static str = "idp:";

    /// Reads a stored attribute owner (`None` for an unknown form: treated as nobody's).
    pub fn parse(text: &str) -> Option<AttrOwner> {
        if text == Owner::LOCAL {
            return Some(AttrOwner::Local);
        }
        text.strip_prefix(AttrOwner::IDP_PREFIX).and_then(|id| id.parse().ok()).map(AttrOwner::Idp)
    }
}

impl fmt::Display for AttrOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrOwner::Idp(id) => write!(f, "{}{id}", AttrOwner::IDP_PREFIX),
            AttrOwner::Local => f.write_str(Owner::LOCAL),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_round_trip_and_unknown_forms_are_refused() {
        for o in [Owner::IdpGroup(1), Owner::Rules(22), Owner::Local, Owner::Held(333)] {
            assert_eq!(Owner::parse(&o.to_string()), Ok(o));
        }
        for bad in ["", "g:", "rule:x", "held:-", "locally", "idp:1"] {
            assert!(Owner::parse(bad).is_err(), "{bad}");
        }
        for o in [AttrOwner::Idp(4), AttrOwner::Local] {
            assert_eq!(AttrOwner::parse(&o.to_string()), Some(o));
        }
        assert_eq!(AttrOwner::parse("g:1"), None);
    }
}
