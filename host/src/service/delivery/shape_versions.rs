//! The rule lifecycle of what targets receive: shape versions stored, activated (checked
//! first: every plugin loads, shapes, and accepts its configuration), previewed against the
//! directory before they go live, and explained for one user after.

use serde::Serialize;
use serde_json::{Value, json};

use super::DeliveryService;
use super::shaping::{Kind, Shaped, Shaper};
use super::sink::user_body;
use crate::model::{ChainDefinition, ChainEntryDef, DirUser, ShapeActivation, ShapeVersion, Target, TargetKind, VersionNote};
use crate::plugins::chain::EntrySpec;
use crate::scim::list::ListParams;
use crate::scim::schema::{GROUP_SCHEMA, ResourceKind};
use crate::service::admin::{AdminError, AdminResult};
use crate::service::directory::user_resource;
use crate::service::rules::RuleManager;
use crate::store::Store;

/// Shape rules to try against the directory.
#[derive(Debug, Clone)]
pub enum ShapeCandidate {
    /// A stored version.
    Version(i64),
    /// Entries not stored (yet): plugin sources and configurations.
    Entries(Vec<EntrySpec>),
    /// No shaping.
    Off,
}

/// What one resource becomes under some shape rules.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// What the target receives (`None`: the rules hold it back).
    pub resource: Option<Value>,
    /// The rules that changed it, in order.
    pub decisions: Vec<crate::model::Decision>,
    /// Why it is held back.
    pub error: Option<String>,
}

impl Outcome {
    fn of(r: Result<Shaped, super::shaping::ShapeError>) -> Outcome {
        match r {
            Ok(s) => Outcome { resource: Some(s.resource), decisions: s.decisions, error: None },
            Err(e) => Outcome { resource: None, decisions: Vec::new(), error: Some(e.to_string()) },
        }
    }
}

/// One resource of a preview: what the target receives now, and under the candidate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreviewRow {
    /// User or group.
    pub kind: Kind,
    /// The directory id.
    pub id: String,
    /// Its userName or group name.
    pub name: String,
    /// Under the active version (or none).
    pub active: Outcome,
    /// Under the candidate.
    pub proposed: Outcome,
    /// Whether the target would receive something else.
    pub changed: bool,
}

/// What a candidate would change for a target, on a sample of the directory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShapePreview {
    /// The version the target runs now.
    pub active_version: Option<i64>,
    /// The candidate's stored version, if it is one.
    pub proposed_version: Option<i64>,
    /// The resources looked at.
    pub rows: Vec<PreviewRow>,
    /// How many would be sent differently.
    pub changed: usize,
    /// How many the candidate would hold back.
    pub held_back: usize,
}

/// Why a target receives a user as it does.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShapeExplanation {
    /// The version that shaped it (none: sent as the directory has it).
    pub version: Option<i64>,
    /// The directory's resource, before the rules.
    pub input: Value,
    /// What the target receives, and why.
    pub outcome: Outcome,
}

impl<S: Store> DeliveryService<S> {
    fn rule_manager(&self) -> AdminResult<&RuleManager<S>> {
        self.rules.as_deref().ok_or_else(|| AdminError::Failed(anyhow::anyhow!("this delivery service runs no plugins")))
    }

    /// The shaping a target runs now (its active version loaded, or none).
    pub async fn shaper(&self, target: &Target) -> AdminResult<Shaper> {
        match target.shape_version {
            None => Ok(Shaper::none(target)),
            Some(n) => {
                let v = self.shape_version(target, n).await?;
                self.build_shaper(target, n, v.entries).await
            }
        }
    }

    async fn shape_version(&self, target: &Target, number: i64) -> AdminResult<ShapeVersion> {
        self.store
            .shape_versions(target.id)
            .await?
            .into_iter()
            .find(|v| v.number == number)
            .ok_or_else(|| AdminError::NotFound(format!("{}/{} has no shape version {number}", target.tenant, target.name)))
    }

    /// Loads shape entries as a chain: every plugin compiled (or cached), every configuration
    /// validated and self-tested, every plugin one that shapes.
    async fn build_shaper(&self, target: &Target, number: i64, entries: Vec<ChainEntryDef>) -> AdminResult<Shaper> {
        let rules = self.rule_manager()?;
        // A plugin that does not shape is named before its configuration is judged.
        for e in &entries {
            if let Some(p) = rules.runtime().cached(&e.plugin)
                && !p.hooks.shape
            {
                let hooks: Vec<&str> = p.hooks.list().iter().map(|h| h.as_str()).collect();
                return Err(AdminError::Invalid(format!("plugin {} does not shape deliveries (it implements: {}); a shape version takes plugins that list Hook::Shape, such as builtin:shape", p.name, hooks.join(", "))));
            }
        }
        let chain = rules.build(&ChainDefinition { entries, ..Default::default() }).await?;
        chain.check_shapes().map_err(|e| AdminError::Invalid(e.to_string()))?;
        Ok(Shaper::new(target, number, chain))
    }

    /// The entries of a definition given as plugin sources (each plugin checked and stored).
    async fn define_shape(&self, target: &Target, specs: &[EntrySpec]) -> AdminResult<Vec<ChainEntryDef>> {
        if specs.is_empty() {
            return Err(AdminError::Invalid("a shape version needs at least one entry (to stop shaping, activate none)".into()));
        }
        Ok(self.rule_manager()?.define(target.tenant_id, specs, Default::default()).await?.entries)
    }

    /// Stores a new shape version of a target after checking that it loads, and makes it the
    /// one the target runs unless `activate` is false (a candidate to preview first). A SCIM
    /// target is then reconciled, so what it has takes the new shape.
    pub async fn set_shape(&self, target: &Target, specs: &[EntrySpec], note: VersionNote, activate: bool) -> AdminResult<ShapeVersion> {
        let entries = self.define_shape(target, specs).await?;
        self.build_shaper(target, 0, entries.clone()).await?;
        let v = self.store.add_shape_version(target.id, entries, note, activate).await?;
        tracing::info!(tenant = %target.tenant, target = %target.name, version = v.number, active = v.active, "shape version stored");
        Ok(v)
    }

    /// Makes a stored version the one a target runs (`None`: no shaping), after checking it
    /// still loads.
    pub async fn activate_shape(&self, target: &Target, number: Option<i64>, author: &str) -> AdminResult<Target> {
        if target.shape_version == number {
            return Err(AdminError::Conflict(match number {
                Some(n) => format!("shape version {n} is already active"),
                None => "the target runs no shape version".into(),
            }));
        }
        if let Some(n) = number {
            let v = self.shape_version(target, n).await?;
            self.build_shaper(target, n, v.entries).await?;
        }
        self.store.activate_shape_version(target.id, number, author).await?;
        tracing::info!(tenant = %target.tenant, target = %target.name, version = ?number, "shape version activated");
        self.store.target(target.id).await?.ok_or_else(|| AdminError::NotFound("the target was removed".into()))
    }

    /// A target's shape versions and activations, newest first.
    pub async fn shape_history(&self, target: &Target) -> AdminResult<(Vec<ShapeVersion>, Vec<ShapeActivation>)> {
        Ok((self.store.shape_versions(target.id).await?, self.store.shape_activations(target.id).await?))
    }

    /// What `candidate` would change for a target, on `user` alone or on the first `limit`
    /// users and groups of the directory. Writes nothing.
    pub async fn preview_shape(&self, target: &Target, candidate: ShapeCandidate, user: Option<&str>, limit: usize) -> AdminResult<ShapePreview> {
        let active = self.shaper(target).await?;
        let (proposed, proposed_version) = match candidate {
            ShapeCandidate::Off => (Shaper::none(target), None),
            ShapeCandidate::Version(n) => {
                let v = self.shape_version(target, n).await?;
                (self.build_shaper(target, n, v.entries).await?, Some(n))
            }
            ShapeCandidate::Entries(specs) => {
                let entries = self.define_shape(target, &specs).await?;
                (self.build_shaper(target, 0, entries).await?, None)
            }
        };
        let limit = limit.clamp(1, 500);
        let mut inputs: Vec<(Kind, String, String, Value)> = Vec::new();
        for u in self.sample_users(target, user, limit).await? {
            inputs.push((Kind::User, u.id.clone(), u.user_name.clone(), base_user(target, &u)));
        }
        if user.is_none() {
            let params = ListParams { count: Some(limit.to_string()), ..Default::default() };
            let q = params.resolve(ResourceKind::Group).map_err(|e| AdminError::Invalid(e.detail))?;
            for g in self.store.directory_groups(target.tenant_id, &q).await?.items {
                inputs.push((Kind::Group, g.id.clone(), g.name.clone(), base_group(target, &g.id, &g.name)));
            }
        }
        let mut rows = Vec::with_capacity(inputs.len());
        for (kind, id, name, input) in inputs {
            let now = Outcome::of(active.shape(kind, input.clone()).await);
            let then = Outcome::of(proposed.shape(kind, input).await);
            let changed = now.resource != then.resource;
            rows.push(PreviewRow { kind, id, name, active: now, proposed: then, changed });
        }
        let changed = rows.iter().filter(|r| r.changed).count();
        let held_back = rows.iter().filter(|r| r.proposed.error.is_some()).count();
        Ok(ShapePreview { active_version: target.shape_version, proposed_version, rows, changed, held_back })
    }

    /// What a target receives of one user under its active version, and which rules made it so.
    pub async fn explain_shape(&self, target: &Target, user_name: &str) -> AdminResult<ShapeExplanation> {
        let u = self.sample_users(target, Some(user_name), 1).await?.into_iter().next().ok_or_else(|| AdminError::NotFound(format!("{} has no user '{user_name}'", target.tenant)))?;
        let input = base_user(target, &u);
        let outcome = Outcome::of(self.shaper(target).await?.shape(Kind::User, input.clone()).await);
        Ok(ShapeExplanation { version: target.shape_version, input, outcome })
    }

    async fn sample_users(&self, target: &Target, user: Option<&str>, limit: usize) -> AdminResult<Vec<DirUser>> {
        let filter = user.map(|u| format!("userName eq \"{}\"", u.replace('\\', "\\\\").replace('"', "\\\"")));
        let params = ListParams { filter, count: Some(limit.to_string()), ..Default::default() };
        let q = params.resolve(ResourceKind::User).map_err(|e| AdminError::Invalid(e.detail))?;
        let users = self.store.directory_users(target.tenant_id, &q).await?.items;
        if let Some(name) = user
            && users.is_empty()
        {
            return Err(AdminError::NotFound(format!("{} has no user '{name}'", target.tenant)));
        }
        Ok(users)
    }
}

/// A directory user as the target's kind sends it, before its shape rules.
fn base_user(target: &Target, u: &DirUser) -> Value {
    match target.kind {
        TargetKind::Webhook => Value::Object(user_resource(&u.id, &u.user_name, u.active, &u.attributes, None)),
        TargetKind::Scim => user_body(&u.user_name, u.active, &u.attributes),
    }
}

/// A directory group as the target's kind sends it, before its shape rules.
fn base_group(target: &Target, id: &str, name: &str) -> Value {
    match target.kind {
        TargetKind::Webhook => json!({"id": id, "displayName": name}),
        TargetKind::Scim => json!({"schemas": [GROUP_SCHEMA], "displayName": name}),
    }
}
