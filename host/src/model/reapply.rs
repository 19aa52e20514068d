//! Re-applying rules to what exists: the items of a batch, what happened to each, and the
//! resumable job that runs them.

use serde_json::Value;

use super::{AuditInfo, EntryWrite, Timestamp};

/// A user whose rules are re-applied: where it is (`pk`, the resumable cursor), the IdP
/// view version it was mapped from (the write is skipped if the IdP changed it meanwhile),
/// and the entry the rules map it to now.
#[derive(Debug, Clone)]
pub struct ReapplyUser {
    /// Storage key: the job's cursor.
    pub pk: i64,
    /// The SCIM id.
    pub id: String,
    /// The IdP view version it was mapped from.
    pub version: i64,
    /// What the rules map it to now.
    pub entry: EntryWrite,
    /// What joining the directory does when the name is taken (for a user coming into scope).
    pub matching: super::MatchPolicy,
    /// Its audit record.
    pub audit: AuditInfo,
}

/// A group whose rules are re-applied, with the app groups it maps to now.
#[derive(Debug, Clone)]
pub struct ReapplyGroup {
    /// Storage key: the job's cursor.
    pub pk: i64,
    /// The SCIM id.
    pub id: String,
    /// The app groups it maps to now.
    pub targets: Vec<String>,
    /// The guard's budget: past it, the memberships a remapping takes away are held.
    pub removal_budget: Option<u32>,
    /// Its audit record.
    pub audit: AuditInfo,
}

/// What re-applying did (or would do) to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutcomeStatus {
    /// The rules changed it.
    Changed,
    /// The rules left it as it was.
    Unchanged,
    /// The IdP changed it meanwhile; its own write applied the rules.
    Skipped,
    /// A rule refused it, or the change would collide.
    Failed,
}

impl OutcomeStatus {
    /// The name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeStatus::Changed => "changed",
            OutcomeStatus::Unchanged => "unchanged",
            OutcomeStatus::Skipped => "skipped",
            OutcomeStatus::Failed => "failed",
        }
    }
}

/// What re-applying did, or would do, to one resource.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReapplyOutcome {
    /// `User` or `Group`.
    pub resource_type: String,
    /// The SCIM id.
    pub id: String,
    /// The entry's userName before (users) or the IdP group's displayName.
    pub name: String,
    /// What happened.
    pub status: OutcomeStatus,
    /// What changed (as in the audit trail).
    pub changes: Value,
    /// Why it failed or was skipped.
    pub error: Option<String>,
}

/// How a re-apply batch is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReapplyMode {
    /// Computed in a transaction that is rolled back: nothing is written (preview).
    Preview,
    /// Committed, without a job: the rules re-applied to a few users outside a re-apply
    /// (those a group change moved into or out of scope).
    Commit,
    /// Committed, together with the job's progress (so a crash resumes after this batch):
    /// the batch ends at storage key `cursor`; `refused` items failed before reaching the
    /// store (a rule refused them) and count as seen and failed.
    Job {
        /// The job.
        id: i64,
        /// The last storage key of the batch.
        cursor: i64,
        /// Items the rules refused before the store.
        refused: i64,
    },
}

/// Where a re-apply job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReapplyPhase {
    /// Going through the connection's users.
    Users,
    /// Then its groups.
    Groups,
    /// Finished.
    Done,
    /// Stopped for good (the reason is recorded).
    Failed,
}

impl ReapplyPhase {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReapplyPhase::Users => "users",
            ReapplyPhase::Groups => "groups",
            ReapplyPhase::Done => "done",
            ReapplyPhase::Failed => "failed",
        }
    }

    /// A phase by its stored name.
    pub fn parse(s: &str) -> Option<ReapplyPhase> {
        [ReapplyPhase::Users, ReapplyPhase::Groups, ReapplyPhase::Done, ReapplyPhase::Failed].into_iter().find(|p| p.as_str() == s)
    }

    /// Whether the job is over.
    pub fn is_final(self) -> bool {
        matches!(self, ReapplyPhase::Done | ReapplyPhase::Failed)
    }
}

/// A re-apply run of one connection, resumable.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReapplyJob {
    /// Its id.
    pub id: i64,
    /// The connection.
    pub idp_id: i64,
    /// The chain version it applies.
    pub chain_version: Option<i64>,
    /// Where it is.
    pub phase: ReapplyPhase,
    /// The last resource (storage key) of the phase that was processed.
    pub cursor: i64,
    /// Resources seen.
    pub seen: i64,
    /// Resources changed.
    pub changed: i64,
    /// Resources that failed.
    pub failed: i64,
    /// Resources when it started.
    pub total: i64,
    /// Who started it.
    pub author: String,
    /// When it started.
    pub started: Timestamp,
    /// Its last progress.
    pub updated: Timestamp,
    /// When it ended.
    pub finished: Option<Timestamp>,
    /// Why it failed.
    pub error: Option<String>,
}
