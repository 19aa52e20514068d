//! Tenants, IdP connections and the tokens that reach them.

use super::Timestamp;

/// One application's directory: its users, groups, IdP connections and rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Storage key.
    pub id: i64,
    /// The name in URLs (`/scim/v2/{tenant}/…`).
    pub name: String,
    /// When it was created.
    pub created: Timestamp,
}

/// The IdP kinds whose dialect details differ where IdPs' habits conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum IdpKind {
    Generic,
    Entra,
    Okta,
    Onelogin,
    Jumpcloud,
    Ping,
    Keycloak,
    Idcs,
    /// Not an IdP that pushes over SCIM: an application that signs users in (SAML, OpenID
    /// Connect) posts their verified claims (`POST /directory/v1/{tenant}/signins`).
    Signin,
}

impl IdpKind {
    /// The name in configurations, the CLI and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            IdpKind::Generic => "generic",
            IdpKind::Entra => "entra",
            IdpKind::Okta => "okta",
            IdpKind::Onelogin => "onelogin",
            IdpKind::Jumpcloud => "jumpcloud",
            IdpKind::Ping => "ping",
            IdpKind::Keycloak => "keycloak",
            IdpKind::Idcs => "idcs",
            IdpKind::Signin => "signin",
        }
    }

    /// A kind by name (any case).
    pub fn parse(s: &str) -> Option<IdpKind> {
        <IdpKind as clap::ValueEnum>::from_str(s, true).ok()
    }

    /// Every kind's name, for messages.
    pub fn names() -> Vec<&'static str> {
        <IdpKind as clap::ValueEnum>::value_variants().iter().map(|k| k.as_str()).collect()
    }
}

/// Token-bucket settings of one IdP connection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second (0: unlimited).
    pub per_second: f64,
    /// Requests allowed at once after a quiet spell.
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit { per_second: 50.0, burst: 200 }
    }
}

/// An invalid rate limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the rate per second must be 0 (unlimited) or positive")]
pub struct BadRate;

impl RateLimit {
    /// This limit with the given parts replaced, checked.
    ///
    /// ```
    /// use mapwright::model::RateLimit;
    /// let r = RateLimit::default().with(Some(0.0), None).unwrap();
    /// assert_eq!((r.per_second, r.burst), (0.0, 200));
    /// assert!(RateLimit::default().with(Some(-1.0), None).is_err());
    /// ```
    pub fn with(self, per_second: Option<f64>, burst: Option<u32>) -> Result<RateLimit, BadRate> {
        let r = RateLimit { per_second: per_second.unwrap_or(self.per_second), burst: burst.unwrap_or(self.burst) };
        if !r.per_second.is_finite() || r.per_second < 0.0 {
            return Err(BadRate);
        }
        Ok(r)
    }
}

/// What a group write does with a member id this connection does not have (a user deleted a
/// moment ago, held by the guard, another connection's, or no user at all).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum UnknownMembers {
    /// Apply the rest of the change and record each skipped member (audit, drift, metric):
    /// one stale id does not fail the whole group, which the IdP would retry forever.
    #[default]
    Skip,
    /// Refuse the whole write with 400 (`invalidValue`).
    Reject,
}

/// A connection's policies, stored as one JSON document (every field has a default).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionSettings {
    /// What a group write does with a member id the connection does not have.
    pub unknown_members: UnknownMembers,
    /// A sign-in connection: which claim gives which attribute.
    pub claims: ClaimMapping,
}

/// Which claims of a sign-in (OpenID Connect ID token claims, or SAML attributes) give the
/// user's attributes. The defaults are OpenID Connect's standard claims; SAML attributes are
/// named by their URIs. A claim with several values gives its first.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClaimMapping {
    /// The claims the userName is taken from, the first present one.
    pub user_name: Vec<String>,
    /// The stable subject: the IdP's id of the user (`externalId`), how a later sign-in finds
    /// the same user after a rename.
    pub external_id: String,
    /// The email address.
    pub email: String,
    /// The given name.
    pub given_name: String,
    /// The family name.
    pub family_name: String,
    /// The display name.
    pub display_name: String,
    /// The groups (names); empty: group claims are not used.
    pub groups: String,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        ClaimMapping {
            user_name: vec!["preferred_username".into(), "email".into()],
            external_id: "sub".into(),
            email: "email".into(),
            given_name: "given_name".into(),
            family_name: "family_name".into(),
            display_name: "name".into(),
            groups: "groups".into(),
        }
    }
}

/// One IdP connection: the scope every SCIM request runs in.
#[derive(Debug, Clone, PartialEq)]
pub struct IdpConnection {
    /// Storage key.
    pub id: i64,
    /// Its tenant's storage key.
    pub tenant_id: i64,
    /// Its tenant's name.
    pub tenant: String,
    /// The connection's name in URLs (`/scim/v2/{tenant}/{idp}`).
    pub name: String,
    /// Which IdP it is.
    pub kind: IdpKind,
    /// Its rate limit.
    pub rate: RateLimit,
    /// A disabled connection's tokens are refused.
    pub disabled: bool,
    /// When it was created.
    pub created: Timestamp,
    /// Its policies.
    pub settings: ConnectionSettings,
}

impl IdpConnection {
    /// A connection of `kind` that exists nowhere (tenant and name `test`): what rules see
    /// when they run outside the server (`mapwright plugin test`).
    pub fn detached(kind: IdpKind) -> IdpConnection {
        IdpConnection {
            id: 0,
            tenant_id: 0,
            tenant: "test".into(),
            name: "test".into(),
            kind,
            rate: RateLimit::default(),
            disabled: false,
            created: Timestamp::now(),
            settings: ConnectionSettings::default(),
        }
    }
}

/// What a new IdP connection is made of.
#[derive(Debug, Clone)]
pub struct NewIdp {
    /// Its name (checked with [`check_name`]).
    pub name: String,
    /// Which IdP it is.
    pub kind: IdpKind,
    /// Its rate limit.
    pub rate: RateLimit,
    /// Its policies.
    pub settings: ConnectionSettings,
}

/// A stored bearer token: only the hash of its secret part.
#[derive(Debug, Clone)]
pub struct TokenRecord {
    /// The connection it authenticates.
    pub idp: IdpConnection,
    /// SHA-256 of the secret.
    pub secret_hash: Vec<u8>,
    /// When it stops working (set when a newer token replaced it).
    pub expires: Option<Timestamp>,
}

/// A stored admin token: global (`tenant: None`) or scoped to one tenant.
#[derive(Debug, Clone)]
pub struct AdminTokenRecord {
    /// Its name, recorded as the actor of its changes.
    pub name: String,
    /// What it may do.
    pub role: TokenRole,
    /// The tenant it is scoped to (`None`: every tenant and the server-wide endpoints).
    pub tenant: Option<Tenant>,
    /// SHA-256 of the secret.
    pub secret_hash: Vec<u8>,
}

/// What an admin-table token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRole {
    /// The admin API (and reading the directory).
    Admin,
    /// Only reading the directory (`/directory/v1`): what an application is given.
    Directory,
    /// Reading the directory and posting the sign-ins the application verified
    /// (`POST /directory/v1/{tenant}/signins`).
    Signin,
}

impl TokenRole {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenRole::Admin => "admin",
            TokenRole::Directory => "directory",
            TokenRole::Signin => "signin",
        }
    }
}

/// A name that is not fit for a URL path segment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} name '{name}': use 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit")]
pub struct BadName {
    /// What was named (`tenant`, `IdP connection`, `token`).
    pub what: &'static str,
    /// The name refused.
    pub name: String,
}

/// Tenant, connection and token names appear in URLs and commands: lower-case letters,
/// digits, `-` and `_`.
///
/// ```
/// use mapwright::model::check_name;
/// assert!(check_name("tenant", "acme-eu").is_ok());
/// assert!(check_name("tenant", "Acme EU").is_err());
/// ```
pub fn check_name(what: &'static str, name: &str) -> Result<(), BadName> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok { Ok(()) } else { Err(BadName { what, name: name.to_string() }) }
}
