//! Administrative operations: tenants, IdP connections and their tokens, access tokens for
//! admins and applications, and the records of what happened (audit, explanations, held
//! operations, drift, local changes).
//!
//! The CLI and the admin API are two faces of this one service: each validates nothing and
//! writes nothing on its own, so a name, a rate limit or a token is checked and made the same
//! way whichever way it arrives.

use std::sync::Arc;

use crate::model::{
    AuditQuery, AuditRecord, BadName, BadRate, BadTime, ConnectionSettings, DriftReport, Explanation, HeldOp, HeldStatus, IdpConnection, IdpKind, LocalChange, NewIdp, RateLimit, Tenant, Timestamp, TokenRole,
    UnknownMembers, check_name,
};
use crate::store::{Store, StoreError};
use crate::tokens;

/// Why an administrative operation was refused. Nothing was changed when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// What the operation names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed or out of range.
    #[error("{0}")]
    Invalid(String),
    /// It collides with what exists (a name taken, a decision already made).
    #[error("{0}")]
    Conflict(String),
    /// The server could not do it (the store or the system failed).
    #[error("{0}")]
    Failed(#[source] anyhow::Error),
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => AdminError::NotFound("not found".into()),
            StoreError::Conflict(m) => AdminError::Conflict(m),
            StoreError::VersionMismatch => AdminError::Conflict("changed concurrently; retry".into()),
            StoreError::InvalidReference(m) => AdminError::Invalid(m),
            e @ (StoreError::Backend(_) | StoreError::NeedsReactivation) => AdminError::Failed(e.into()),
        }
    }
}

impl From<crate::service::rules::RulesError> for AdminError {
    fn from(e: crate::service::rules::RulesError) -> Self {
        use crate::service::rules::RulesError;
        match e {
            RulesError::Plugin(p) => AdminError::Invalid(p.to_string()),
            e @ RulesError::Entry { .. } => AdminError::Invalid(e.to_string()),
            RulesError::NotFound(m) => AdminError::NotFound(m),
            RulesError::Refused(m) => AdminError::Conflict(m),
            RulesError::Store(s) => AdminError::from(s),
        }
    }
}

impl From<BadName> for AdminError {
    fn from(e: BadName) -> Self {
        AdminError::Invalid(e.to_string())
    }
}

impl From<BadRate> for AdminError {
    fn from(e: BadRate) -> Self {
        AdminError::Invalid(e.to_string())
    }
}

impl From<BadTime> for AdminError {
    fn from(e: BadTime) -> Self {
        AdminError::Invalid(e.to_string())
    }
}

/// What an administrative operation returns.
pub type AdminResult<T> = Result<T, AdminError>;

/// A new IdP connection as asked for: unset parts take their defaults.
#[derive(Debug, Clone)]
pub struct ConnectionRequest {
    /// Its name in URLs.
    pub name: String,
    /// Which IdP it is (generic when unset).
    pub kind: Option<IdpKind>,
    /// Sustained requests per second (0: unlimited).
    pub rate_per_second: Option<f64>,
    /// Burst size.
    pub burst: Option<u32>,
    /// Its policies.
    pub settings: ConnectionSettings,
}

/// Changes to an IdP connection; unset parts stay as they are.
#[derive(Debug, Clone, Default)]
pub struct ConnectionChange {
    /// A new kind.
    pub kind: Option<IdpKind>,
    /// A new sustained rate.
    pub rate_per_second: Option<f64>,
    /// A new burst size.
    pub burst: Option<u32>,
    /// Disable (true) or enable (false).
    pub disabled: Option<bool>,
    /// What its group writes do with members it does not have.
    pub unknown_members: Option<UnknownMembers>,
}

/// The longest overlap a token rotation may give the previous tokens.
pub const MAX_OVERLAP_SECS: u64 = 365 * 86_400;

/// The administrative operations over a store.
pub struct AdminService<S: Store> {
    store: Arc<S>,
}

impl<S: Store> AdminService<S> {
    /// The service over `store`.
    pub fn new(store: Arc<S>) -> AdminService<S> {
        AdminService { store }
    }

    // -- Tenants ---------------------------------------------------------------------------

    /// Creates a tenant.
    pub async fn create_tenant(&self, name: &str) -> AdminResult<Tenant> {
        check_name("tenant", name)?;
        Ok(self.store.create_tenant(name).await?)
    }

    /// Every tenant, by name.
    pub async fn tenants(&self) -> AdminResult<Vec<Tenant>> {
        Ok(self.store.list_tenants().await?)
    }

    /// A tenant by name.
    pub async fn tenant(&self, name: &str) -> AdminResult<Tenant> {
        self.store.list_tenants().await?.into_iter().find(|t| t.name == name).ok_or_else(|| AdminError::NotFound(format!("no tenant named '{name}'")))
    }

    // -- IdP connections and their tokens ----------------------------------------------------

    /// The connections of one tenant, or of all.
    pub async fn connections(&self, tenant: Option<&str>) -> AdminResult<Vec<IdpConnection>> {
        Ok(self.store.list_idps(tenant).await?)
    }

    /// A connection by tenant and name.
    pub async fn connection(&self, tenant: &str, name: &str) -> AdminResult<IdpConnection> {
        self.store.find_idp(tenant, name).await?.ok_or_else(|| AdminError::NotFound(format!("no IdP connection '{tenant}/{name}'")))
    }

    /// Creates a connection with its first bearer token; the token is returned this once
    /// (only its hash is kept).
    pub async fn create_connection(&self, tenant: &str, req: ConnectionRequest) -> AdminResult<(IdpConnection, String)> {
        check_name("IdP connection", &req.name)?;
        let rate = RateLimit::default().with(req.rate_per_second, req.burst)?;
        let idp = self.store.create_idp(tenant, NewIdp { name: req.name, kind: req.kind.unwrap_or(IdpKind::Generic), rate, settings: req.settings }).await?;
        let token = self.issue_token(&idp, None).await?;
        tracing::info!(tenant = %idp.tenant, idp = %idp.name, "IdP connection created");
        Ok((idp, token))
    }

    /// Makes sure a tenant a configuration declares exists.
    pub async fn declare_tenant(&self, name: &str) -> AdminResult<Tenant> {
        match self.tenant(name).await {
            Err(AdminError::NotFound(_)) => self.create_tenant(name).await,
            found => found,
        }
    }

    /// Makes the connection what a configuration declares: created (with its first token,
    /// returned) if missing, its kind, rate limit and policies set if they differ.
    pub async fn declare_connection(&self, tenant: &str, name: &str, kind: IdpKind, rate: RateLimit, settings: ConnectionSettings) -> AdminResult<(IdpConnection, Option<String>)> {
        match self.store.find_idp(tenant, name).await? {
            Some(idp) if idp.kind == kind && idp.rate == rate && idp.settings == settings => Ok((idp, None)),
            Some(idp) => {
                self.store.update_idp(idp.id, kind, rate).await?;
                self.store.set_idp_settings(idp.id, settings.clone()).await?;
                tracing::info!(tenant = %idp.tenant, idp = %idp.name, "applied the configured kind, rate limit and policies");
                Ok((IdpConnection { kind, rate, settings, ..idp }, None))
            }
            None => {
                let req = ConnectionRequest { name: name.to_string(), kind: Some(kind), rate_per_second: Some(rate.per_second), burst: Some(rate.burst), settings };
                let (idp, token) = self.create_connection(tenant, req).await?;
                Ok((idp, Some(token)))
            }
        }
    }

    /// Changes a connection's kind, rate limit or state; returns it as it is now.
    pub async fn update_connection(&self, idp: &IdpConnection, change: ConnectionChange) -> AdminResult<IdpConnection> {
        if change.kind.is_some() || change.rate_per_second.is_some() || change.burst.is_some() {
            let rate = idp.rate.with(change.rate_per_second, change.burst)?;
            self.store.update_idp(idp.id, change.kind.unwrap_or(idp.kind), rate).await?;
        }
        if let Some(d) = change.disabled {
            self.store.set_idp_disabled(idp.id, d).await?;
        }
        if let Some(u) = change.unknown_members {
            let mut settings = idp.settings.clone();
            settings.unknown_members = u;
            self.store.set_idp_settings(idp.id, settings).await?;
        }
        self.connection(&idp.tenant, &idp.name).await
    }

    /// Issues a new bearer token for a connection; the previous ones keep working for
    /// `overlap_secs` (at most a year; 0 revokes them now). Returns the token (shown once)
    /// and when the previous ones stop working.
    pub async fn rotate_token(&self, idp: &IdpConnection, overlap_secs: u64) -> AdminResult<(String, Timestamp)> {
        let until = Timestamp::now().plus_secs(overlap_secs.min(MAX_OVERLAP_SECS) as i64);
        let token = self.issue_token(idp, Some(until.clone())).await?;
        tracing::info!(tenant = %idp.tenant, idp = %idp.name, previous_until = %until, "IdP token rotated");
        Ok((token, until))
    }

    async fn issue_token(&self, idp: &IdpConnection, expire_others_at: Option<Timestamp>) -> AdminResult<String> {
        let t = tokens::generate().map_err(AdminError::Failed)?;
        self.store.add_token(idp.id, &t.id, &t.secret_hash, expire_others_at).await?;
        Ok(t.token)
    }

    // -- Access tokens (admins and applications) ----------------------------------------------

    /// Makes an admin token (`role` admin) or a directory token (`role` directory, what an
    /// application reads its directory with), global or scoped to a tenant. Returned once.
    pub async fn create_access_token(&self, name: &str, tenant: Option<&Tenant>, role: TokenRole) -> AdminResult<String> {
        check_name("token", name)?;
        let t = match role {
            TokenRole::Admin => tokens::generate_admin(),
            TokenRole::Directory | TokenRole::Signin => tokens::generate_directory(),
        }
        .map_err(AdminError::Failed)?;
        self.store.add_admin_token(&t.id, &t.secret_hash, tenant.map(|t| t.id), name, role).await?;
        tracing::info!(tenant = tenant.map(|t| t.name.as_str()).unwrap_or("*"), name, role = role.as_str(), "access token created");
        Ok(t.token)
    }

    /// An admin or directory token by its public id (for authentication).
    pub async fn access_token(&self, token_id: &str) -> AdminResult<Option<crate::model::AdminTokenRecord>> {
        Ok(self.store.find_admin_token(token_id).await?)
    }

    /// A connection token by its public id (for authentication).
    pub async fn connection_token(&self, token_id: &str) -> AdminResult<Option<crate::model::TokenRecord>> {
        Ok(self.store.find_token(token_id).await?)
    }

    /// On the very first start, a global admin token (there is no other way in yet).
    pub async fn first_admin_token(&self) -> AdminResult<Option<String>> {
        if self.store.count_admin_tokens().await? > 0 {
            return Ok(None);
        }
        self.create_access_token("initial", None, TokenRole::Admin).await.map(Some)
    }

    // -- Records ----------------------------------------------------------------------------

    /// Audit records matching `q`, newest first (at most 10,000).
    pub async fn audit(&self, mut q: AuditQuery) -> AdminResult<Vec<AuditRecord>> {
        q.limit = q.limit.clamp(1, 10_000);
        Ok(self.store.audit(q).await?)
    }

    /// Why a tenant's entry is what it is.
    pub async fn explain(&self, tenant: &Tenant, user: &str) -> AdminResult<Explanation> {
        self.store.explain(tenant.id, user).await?.ok_or_else(|| AdminError::NotFound(format!("{} has no directory entry named '{user}'", tenant.name)))
    }

    /// A tenant's held operations: pending ones, or all.
    pub async fn held(&self, tenant: &Tenant, all: bool) -> AdminResult<Vec<HeldOp>> {
        Ok(self.store.held_ops(tenant.id, if all { None } else { Some(HeldStatus::Held) }).await?)
    }

    /// Applies (approve) or drops (reject) a held operation, as `by`.
    pub async fn decide_held(&self, tenant: &Tenant, id: i64, approve: bool, by: &str) -> AdminResult<HeldOp> {
        let op = self.store.decide_held(tenant.id, id, approve, by).await?;
        tracing::info!(tenant = %tenant.name, id, status = op.status.as_str(), by, "held operation decided");
        Ok(op)
    }

    /// Where the directory differs from what a connection's IdP says.
    pub async fn drift(&self, idp: &IdpConnection) -> AdminResult<DriftReport> {
        Ok(self.store.drift(idp).await?)
    }

    /// Applies a change made in the application to an entry, as `by`; returns the entry
    /// explained.
    pub async fn local_change(&self, tenant: &Tenant, user: &str, change: LocalChange, by: &str) -> AdminResult<Explanation> {
        self.store.local_change(tenant.id, user, change, by).await?;
        self.explain(tenant, user).await
    }
}

impl<S: Store> AdminService<S> {
    // -- Retention --------------------------------------------------------------------------

    /// Purges soft-deleted entries whose retention has ended, and directory changes older
    /// than `change_retention_secs`; returns (entries, changes) purged.
    pub async fn purge(&self, change_retention_secs: u64) -> AdminResult<(usize, usize)> {
        let now = Timestamp::now();
        let entries = self.store.purge_expired(&now).await?;
        let before = now.plus_secs(-i64::try_from(change_retention_secs).unwrap_or(i64::MAX / 2));
        let changes = self.store.purge_changes(&before).await?;
        Ok((entries, changes))
    }
}

/// A time bound given by a person or a client (RFC 3339, any offset).
pub fn time_bound(what: &str, t: Option<&str>) -> AdminResult<Option<Timestamp>> {
    t.map(|t| Timestamp::parse(t).map_err(|e| AdminError::Invalid(format!("{what}: {e}")))).transpose()
}
