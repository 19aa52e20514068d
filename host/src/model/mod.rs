//! The domain: the types every layer speaks, and nothing that does I/O.
//!
//! Tenants and their IdP connections ([`tenancy`]), the IdP view of users and groups
//! ([`idp_view`]), directory entries and what happens to them ([`entry`]), the directory as
//! the application reads it ([`directory`]), the applications it is delivered to ([`delivery`]), rules as data ([`rules`]), the records kept of
//! every change ([`records`], [`reapply`]), and the small types that replace strings
//! ([`Owner`], [`Timestamp`], [`Decision`]). The store persists these; the mapping pipeline,
//! the plugins and the services compute with them; nothing here knows any of those.

pub mod chain_diff;
pub mod decision;
pub mod delivery;
pub mod directory;
pub mod entry;
pub mod idp_view;
pub mod owner;
pub mod reapply;
pub mod records;
pub mod rules;
pub mod tenancy;
pub mod time;

pub use chain_diff::{EntryChange, history_changes};
pub use decision::Decision;
pub use delivery::{DeadLetter, DeadState, DeletePolicy, Mapped, NewDeadLetter, NewTarget, Origin, Progress, ShapeActivation, ShapeVersion, Target, TargetChange, TargetCredential, TargetKind, TargetSettings, UpdateMode, WebhookSecret};
pub use directory::{Change, ChangeKind, DirGroup, DirPage, DirRef, DirUser, Feed};
pub use entry::{DeprovisionAction, DirectoryEntry, EntryWrite, Lifecycle, LocalChange, MatchPolicy};
pub use idp_view::{GroupUpdate, GroupWrite, Member, MemberRule, MemberRules, Page, SkippedMember, StoredGroup, StoredUser, UserBefore, UserWrite};
pub use owner::{AttrOwner, Owner, OwnerKind};
pub use reapply::{OutcomeStatus, ReapplyGroup, ReapplyJob, ReapplyMode, ReapplyOutcome, ReapplyPhase, ReapplyUser};
pub use records::{AuditInfo, AuditQuery, AuditRecord, DriftEntry, DriftMembership, DriftReport, DriftSkipped, Explanation, HeldKind, HeldOp, HeldStatus, MembershipSource, ShadowDiff};
pub use rules::{Activation, ChainDefinition, ChainEntryDef, ChainVersion, Hook, Limits, PluginRecord, VersionNote, VersionSource};
pub use tenancy::{AdminTokenRecord, BadName, BadRate, ClaimMapping, ConnectionSettings, IdpConnection, IdpKind, NewIdp, RateLimit, Tenant, TokenRecord, TokenRole, UnknownMembers, check_name};
pub use time::{BadTime, Timestamp};
