//! Per-IdP-kind behaviour, for the few places where two IdPs' habits conflict.
//!
//! Everything that does not conflict is tolerated for every kind and lives where it is
//! parsed (`resource::canonicalize` for bodies, `patch` for operations). This table holds
//! only the switches that must differ by kind.

use crate::model::IdpKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// The switches of one IdP kind.
pub struct Dialect {
    /// A group PUT whose body has no `members` attribute leaves the members as they are.
    /// RFC 7644 PUT semantics say it removes them all, and Okta (which pushes the full list)
    /// relies on that; IdPs that manage membership only through PATCH and send PUT for
    /// attributes would otherwise empty the group.
    pub put_without_members_keeps_members: bool,
}

impl Dialect {
    /// The dialect of an IdP kind.
    pub fn for_kind(kind: IdpKind) -> Dialect {
        match kind {
            IdpKind::Okta | IdpKind::Generic | IdpKind::Keycloak | IdpKind::Idcs | IdpKind::Ping | IdpKind::Signin => {
                Dialect { put_without_members_keeps_members: false }
            }
            IdpKind::Entra | IdpKind::Onelogin | IdpKind::Jumpcloud => Dialect { put_without_members_keeps_members: true },
        }
    }
}
