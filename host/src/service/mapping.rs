//! The mapping pipeline: the one function between what an IdP sent and the directory.
//!
//! Every write passes the IdP's canonical resource through the pipeline of its connection to
//! get the directory entry (users) or the app groups (groups). Because the pipeline is a pure
//! function of the stored IdP view, re-running it over that view rebuilds the directory,
//! which is what rule preview and re-apply will rely on. Today every connection uses
//! [`IdentityMapping`]; the plugin runtime replaces it with per-connection plugin chains.

use std::sync::Arc;

use serde_json::Value;

use crate::store::{EntryWrite, IdpConnection};

/// Why a mapping refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    /// A rule rejected the input (a client error: 400).
    #[error("rejected by {rule}: {reason}")]
    Rejected { rule: String, reason: String },
    /// A rule failed (a server error: 500).
    #[error("rule {rule} failed: {reason}")]
    Fault { rule: String, reason: String },
}

/// The operation a mapping runs for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Replace,
    Patch,
}

/// What a mapping knows of its call.
#[derive(Debug, Clone, Copy)]
pub struct MapContext<'a> {
    pub idp: &'a IdpConnection,
    pub operation: Operation,
}

pub trait MappingPipeline: Send + Sync {
    /// The directory entry for an IdP user resource (canonical JSON).
    fn map_user(&self, ctx: &MapContext<'_>, user: &Value) -> Result<EntryWrite, MappingError>;
    /// The app groups an IdP group (canonical JSON, without members) maps to.
    fn map_group(&self, ctx: &MapContext<'_>, group: &Value) -> Result<Vec<String>, MappingError>;
}

/// userName, active and attributes pass through unchanged; an IdP group is the app group of
/// the same name.
#[derive(Debug, Default)]
pub struct IdentityMapping;

impl MappingPipeline for IdentityMapping {
    fn map_user(&self, _ctx: &MapContext<'_>, user: &Value) -> Result<EntryWrite, MappingError> {
        let user_name = user.get("userName").and_then(Value::as_str).unwrap_or_default().to_string();
        if user_name.trim().is_empty() {
            return Err(MappingError::Rejected { rule: "identity".into(), reason: "userName is empty".into() });
        }
        let active = user.get("active").and_then(Value::as_bool).unwrap_or(true);
        Ok(EntryWrite { user_name, active, attributes: user.clone() })
    }

    fn map_group(&self, _ctx: &MapContext<'_>, group: &Value) -> Result<Vec<String>, MappingError> {
        Ok(group.get("displayName").and_then(Value::as_str).map(|s| vec![s.to_string()]).unwrap_or_default())
    }
}

/// Chooses the pipeline of each IdP connection.
pub trait PipelineRegistry: Send + Sync {
    fn pipeline_for(&self, idp: &IdpConnection) -> Arc<dyn MappingPipeline>;
}

/// Every connection maps with the identity mapping.
#[derive(Default)]
pub struct IdentityRegistry(Arc<IdentityMapping>);

impl PipelineRegistry for IdentityRegistry {
    fn pipeline_for(&self, _idp: &IdpConnection) -> Arc<dyn MappingPipeline> {
        self.0.clone()
    }
}
