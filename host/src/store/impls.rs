//! The store's traits on [`SqlStore`]: each operation runs one function of the module of its
//! concern ([`super::logic`]), as a read (one snapshot) or a write (one transaction).

use std::sync::Arc;

use super::SqlStore;
use super::logic::{approvals, connections, delivery, directory, drift, entries, explain, groups, guard_window, held, leases, lifecycle, local, reapply, rules, shapes, users};
use crate::model::*;
use crate::scim::list::ListQuery;
use crate::store::{DeliveryStore, DirectoryStore, FeedStore, GuardStore, IdpViewStore, LeaseStore, ReapplyStore, RecordStore, RuleStore, StoreResult, TenantStore, WriteComing};

impl TenantStore for SqlStore {
    async fn create_tenant(&self, name: &str) -> StoreResult<Tenant> {
        let name = name.to_string();
        self.write(move |t| connections::create_tenant(t, &name)).await
    }
    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        self.read(|c| connections::list_tenants(c)).await
    }
    async fn create_idp(&self, tenant: &str, idp: NewIdp) -> StoreResult<IdpConnection> {
        let tenant = tenant.to_string();
        self.write(move |t| connections::create_idp(t, &tenant, &idp)).await
    }
    async fn list_idps(&self, tenant: Option<&str>) -> StoreResult<Vec<IdpConnection>> {
        let tenant = tenant.map(str::to_string);
        self.read(move |c| connections::list_idps(c, tenant.as_deref())).await
    }
    async fn update_idp(&self, idp_id: i64, kind: IdpKind, rate: RateLimit) -> StoreResult<()> {
        self.write(move |t| connections::update_idp(t, idp_id, kind, rate)).await
    }
    async fn find_idp(&self, tenant: &str, idp: &str) -> StoreResult<Option<IdpConnection>> {
        let (tenant, idp) = (tenant.to_string(), idp.to_string());
        self.read(move |c| connections::find_idp(c, &tenant, &idp)).await
    }
    async fn set_idp_disabled(&self, idp_id: i64, disabled: bool) -> StoreResult<()> {
        self.write(move |t| connections::set_idp_disabled(t, idp_id, disabled)).await
    }
    async fn set_idp_settings(&self, idp_id: i64, settings: ConnectionSettings) -> StoreResult<()> {
        self.write(move |t| connections::set_idp_settings(t, idp_id, &settings)).await
    }
    async fn add_token(&self, idp_id: i64, token_id: &str, secret_hash: &[u8], expire_others_at: Option<Timestamp>) -> StoreResult<()> {
        let (token_id, hash) = (token_id.to_string(), secret_hash.to_vec());
        self.write(move |t| connections::add_token(t, idp_id, &token_id, &hash, expire_others_at.as_ref())).await
    }
    async fn find_token(&self, token_id: &str) -> StoreResult<Option<TokenRecord>> {
        let token_id = token_id.to_string();
        self.read(move |c| connections::find_token(c, &token_id)).await
    }
    async fn add_admin_token(&self, token_id: &str, secret_hash: &[u8], tenant_id: Option<i64>, name: &str, role: TokenRole) -> StoreResult<()> {
        let (token_id, hash, name) = (token_id.to_string(), secret_hash.to_vec(), name.to_string());
        self.write(move |t| connections::add_admin_token(t, &token_id, &hash, tenant_id, &name, role)).await
    }
    async fn find_admin_token(&self, token_id: &str) -> StoreResult<Option<AdminTokenRecord>> {
        let token_id = token_id.to_string();
        self.read(move |c| connections::find_admin_token(c, &token_id)).await
    }
    async fn count_admin_tokens(&self) -> StoreResult<i64> {
        self.read(|c| connections::count_admin_tokens(c)).await
    }
}

impl IdpViewStore for SqlStore {
    fn write_coming(&self) -> WriteComing {
        match self.as_sqlite() {
            Some(s) => s.write_coming(),
            None => WriteComing::uncounted(),
        }
    }
    async fn get_user(&self, idp: &IdpConnection, id: &str, with_groups: bool) -> StoreResult<StoredUser> {
        let (idp_id, id) = (idp.id, id.to_string());
        self.read(move |c| users::get(c, idp_id, &id, with_groups)).await
    }
    async fn list_users(&self, idp: &IdpConnection, q: &ListQuery) -> StoreResult<Page<StoredUser>> {
        let (idp_id, q) = (idp.id, q.clone());
        self.read(move |c| users::list(c, idp_id, &q)).await
    }
    async fn create_user(&self, idp: &IdpConnection, w: UserWrite, audit: AuditInfo) -> StoreResult<StoredUser> {
        let (idp, prep) = (idp.clone(), users::Prepared::new(&w, None));
        self.write_for(idp.tenant_id, move |t| users::create(t, &idp, &w, &prep, &audit)).await
    }
    async fn update_user(&self, idp: &IdpConnection, id: &str, before: Arc<UserBefore>, w: UserWrite, audit: AuditInfo) -> StoreResult<StoredUser> {
        let (idp, id, prep) = (idp.clone(), id.to_string(), users::Prepared::new(&w, Some(&before.body)));
        self.write_for(idp.tenant_id, move |t| users::update(t, &idp, &id, &before, &w, &prep, &audit)).await
    }
    async fn delete_user(&self, idp: &IdpConnection, id: &str, expected_version: Option<i64>, action: DeprovisionAction, hold: bool, audit: AuditInfo) -> StoreResult<()> {
        let (idp, id) = (idp.clone(), id.to_string());
        self.write_for(idp.tenant_id, move |t| users::delete(t, &idp, &id, expected_version, action, hold, &audit)).await
    }
    async fn get_group(&self, idp: &IdpConnection, id: &str, with_members: bool) -> StoreResult<StoredGroup> {
        let (idp_id, id) = (idp.id, id.to_string());
        self.read(move |c| groups::get(c, idp_id, &id, with_members)).await
    }
    async fn list_groups(&self, idp: &IdpConnection, q: &ListQuery) -> StoreResult<Page<StoredGroup>> {
        let (idp_id, q) = (idp.id, q.clone());
        self.read(move |c| groups::list(c, idp_id, &q)).await
    }
    async fn create_group(&self, idp: &IdpConnection, w: GroupWrite, members: Vec<String>, rules: MemberRules, audit: AuditInfo) -> StoreResult<StoredGroup> {
        let idp = idp.clone();
        self.write_for(idp.tenant_id, move |t| groups::create(t, &idp, &w, &members, &rules, &audit)).await
    }
    async fn update_group(&self, idp: &IdpConnection, id: &str, u: GroupUpdate, audit: AuditInfo) -> StoreResult<(StoredGroup, u32)> {
        let (idp, id) = (idp.clone(), id.to_string());
        self.write_for(idp.tenant_id, move |t| groups::update(t, &idp, &id, &u, &audit)).await
    }
    async fn group_targets(&self, idp: &IdpConnection, id: &str) -> StoreResult<Vec<String>> {
        let (idp_id, id) = (idp.id, id.to_string());
        self.read(move |c| groups::target_names(c, idp_id, &id)).await
    }
    async fn delete_group(&self, idp: &IdpConnection, id: &str, expected_version: Option<i64>, removal_budget: Option<u32>, audit: AuditInfo) -> StoreResult<u32> {
        let (idp, id) = (idp.clone(), id.to_string());
        self.write_for(idp.tenant_id, move |t| groups::delete(t, &idp, &id, expected_version, removal_budget, &audit)).await
    }
    async fn users_after(&self, idp: &IdpConnection, after_pk: i64, limit: usize) -> StoreResult<Vec<(i64, StoredUser)>> {
        let idp_id = idp.id;
        self.read(move |c| users::page_after(c, idp_id, after_pk, limit)).await
    }
    async fn groups_after(&self, idp: &IdpConnection, after_pk: i64, limit: usize) -> StoreResult<Vec<(i64, StoredGroup)>> {
        let idp_id = idp.id;
        self.read(move |c| groups::page_after(c, idp_id, after_pk, limit)).await
    }
}

impl DirectoryStore for SqlStore {
    async fn entry_of_user(&self, idp: &IdpConnection, id: &str) -> StoreResult<Option<DirectoryEntry>> {
        let (idp_id, id) = (idp.id, id.to_string());
        self.read(move |c| entries::of_user(c, idp_id, &id)).await
    }
    async fn entry_uid_of_user(&self, idp: &IdpConnection, id: &str) -> StoreResult<Option<String>> {
        let (idp_id, id) = (idp.id, id.to_string());
        self.read(move |c| entries::uid_of_user(c, idp_id, &id)).await
    }
    async fn directory_entry(&self, tenant_id: i64, user_name: &str) -> StoreResult<Option<DirectoryEntry>> {
        let user_name = user_name.to_string();
        self.read(move |c| entries::by_name(c, tenant_id, &user_name)).await
    }
    async fn local_change(&self, tenant_id: i64, user_name: &str, change: LocalChange, by: &str) -> StoreResult<DirectoryEntry> {
        let (user_name, by) = (user_name.to_string(), by.to_string());
        self.write_for(tenant_id, move |t| local::change(t, tenant_id, &user_name, &change, &by)).await
    }
    async fn directory_users(&self, tenant_id: i64, q: &ListQuery) -> StoreResult<DirPage<DirUser>> {
        let q = q.clone();
        self.read(move |c| directory::users(c, tenant_id, &q)).await
    }
    async fn directory_user(&self, tenant_id: i64, id: &str) -> StoreResult<Option<DirUser>> {
        let id = id.to_string();
        self.read(move |c| directory::user(c, tenant_id, &id)).await
    }
    async fn directory_groups(&self, tenant_id: i64, q: &ListQuery) -> StoreResult<DirPage<DirGroup>> {
        let q = q.clone();
        self.read(move |c| directory::groups(c, tenant_id, &q)).await
    }
    async fn directory_group(&self, tenant_id: i64, id: &str, with_members: bool) -> StoreResult<Option<DirGroup>> {
        let id = id.to_string();
        self.read(move |c| directory::group(c, tenant_id, &id, with_members)).await
    }
    async fn purge_expired(&self, now: &Timestamp) -> StoreResult<usize> {
        let now = now.clone();
        self.write(move |t| lifecycle::purge_expired(t, &now)).await
    }
}

impl RuleStore for SqlStore {
    async fn put_plugin(&self, tenant_id: i64, record: PluginRecord, bytes: Vec<u8>) -> StoreResult<PluginRecord> {
        self.write(move |t| rules::put_plugin(t, tenant_id, &record, &bytes)).await
    }
    async fn plugin_bytes(&self, hash: &str) -> StoreResult<Vec<u8>> {
        let hash = hash.to_string();
        self.read(move |c| rules::plugin_bytes(c, &hash)).await
    }
    async fn list_plugins(&self, tenant_id: i64) -> StoreResult<Vec<PluginRecord>> {
        self.read(move |c| rules::list_plugins(c, tenant_id)).await
    }
    async fn add_chain_version(&self, idp_id: i64, def: ChainDefinition, note: VersionNote, activate: bool) -> StoreResult<ChainVersion> {
        self.write(move |t| rules::add_version(t, idp_id, &def, &note, activate)).await
    }
    async fn activate_chain_version(&self, idp_id: i64, number: i64, author: &str) -> StoreResult<ChainVersion> {
        let author = author.to_string();
        self.write(move |t| rules::activate_version(t, idp_id, number, &author)).await
    }
    async fn chain_versions(&self, idp_id: i64) -> StoreResult<Vec<ChainVersion>> {
        self.read(move |c| rules::versions(c, idp_id)).await
    }
    async fn chain_activations(&self, idp_id: i64) -> StoreResult<Vec<Activation>> {
        self.read(move |c| rules::activations(c, idp_id)).await
    }
    async fn active_chains(&self) -> StoreResult<Vec<ChainVersion>> {
        self.read(|c| rules::active(c)).await
    }
    async fn set_shadow(&self, idp_id: i64, number: Option<i64>) -> StoreResult<()> {
        self.write(move |t| rules::set_shadow(t, idp_id, number)).await
    }
    async fn shadow_chains(&self) -> StoreResult<Vec<ChainVersion>> {
        self.read(|c| rules::shadows(c)).await
    }
    async fn add_shadow_diff(&self, idp_id: i64, d: ShadowDiff) -> StoreResult<()> {
        self.write(move |t| rules::add_shadow_diff(t, idp_id, &d)).await
    }
    async fn shadow_diffs(&self, idp_id: i64, version: i64, limit: usize) -> StoreResult<Vec<ShadowDiff>> {
        self.read(move |c| rules::shadow_diffs(c, idp_id, version, limit)).await
    }
    async fn rules_epoch(&self) -> StoreResult<i64> {
        self.read(|c| rules::epoch(c)).await
    }
}

impl ReapplyStore for SqlStore {
    async fn reapply_users(&self, idp: &IdpConnection, items: Vec<ReapplyUser>, mode: ReapplyMode) -> StoreResult<Vec<ReapplyOutcome>> {
        let idp = idp.clone();
        self.write_or_roll_back_for(idp.tenant_id, move |t| reapply::users(t, &idp, &items, mode), mode != ReapplyMode::Preview).await
    }
    async fn reapply_groups(&self, idp: &IdpConnection, items: Vec<ReapplyGroup>, mode: ReapplyMode) -> StoreResult<Vec<ReapplyOutcome>> {
        let idp = idp.clone();
        self.write_or_roll_back_for(idp.tenant_id, move |t| reapply::groups(t, &idp, &items, mode), mode != ReapplyMode::Preview).await
    }
    async fn start_reapply(&self, idp: &IdpConnection, chain_version: Option<i64>, author: &str) -> StoreResult<ReapplyJob> {
        let (idp, author) = (idp.clone(), author.to_string());
        self.write(move |t| reapply::start(t, &idp, chain_version, &author)).await
    }
    async fn reapply_job(&self, idp_id: i64) -> StoreResult<Option<ReapplyJob>> {
        self.read(move |c| reapply::latest(c, idp_id)).await
    }
    async fn advance_reapply(&self, job_id: i64, phase: ReapplyPhase, error: Option<String>) -> StoreResult<ReapplyJob> {
        self.write(move |t| reapply::advance(t, job_id, phase, error.as_deref())).await
    }
}

impl RecordStore for SqlStore {
    async fn audit(&self, q: AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        self.read(move |c| super::logic::audit::query(c, &q)).await
    }
    async fn explain(&self, tenant_id: i64, user_name: &str) -> StoreResult<Option<Explanation>> {
        let user_name = user_name.to_string();
        self.read(move |c| explain::explain(c, tenant_id, &user_name)).await
    }
    async fn held_ops(&self, tenant_id: i64, status: Option<HeldStatus>) -> StoreResult<Vec<HeldOp>> {
        self.read(move |c| held::list(c, tenant_id, status)).await
    }
    async fn decide_held(&self, tenant_id: i64, id: i64, approve: bool, by: &str) -> StoreResult<HeldOp> {
        let by = by.to_string();
        self.write_for(tenant_id, move |t| approvals::decide(t, tenant_id, id, approve, &by)).await
    }
    async fn drift(&self, idp: &IdpConnection) -> StoreResult<DriftReport> {
        let idp = idp.clone();
        self.read(move |c| drift::report(c, &idp)).await
    }
}

/// Wall-clock milliseconds: the guard's windows are compared across replicas.
fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl GuardStore for SqlStore {
    async fn guard_take(&self, idp_id: i64, n: u32, max: u32, window_ms: i64) -> StoreResult<u32> {
        if n == 0 {
            return Ok(0);
        }
        let now = now_ms();
        self.write(move |t| guard_window::take(t, idp_id, n, max, window_ms, now)).await
    }
    async fn guard_free(&self, idp_id: i64, max: u32, window_ms: i64) -> StoreResult<u32> {
        let now = now_ms();
        self.read(move |c| guard_window::free(c, idp_id, max, window_ms, now)).await
    }
}

impl LeaseStore for SqlStore {
    async fn lease(&self, name: &str, holder: &str, ttl_ms: i64) -> StoreResult<bool> {
        let (name, holder) = (name.to_string(), holder.to_string());
        let now = now_ms();
        self.write(move |t| leases::acquire(t, &name, &holder, now, ttl_ms)).await
    }
    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.write(move |t| leases::release(t, &name, &holder)).await
    }
}

impl FeedStore for SqlStore {
    async fn changes(&self, tenant_id: i64, since: i64, limit: usize) -> StoreResult<Feed> {
        self.read(move |c| directory::changes(c, tenant_id, since, limit)).await
    }
    async fn change_cursor(&self, tenant_id: i64) -> StoreResult<i64> {
        self.read(move |c| directory::cursor(c, tenant_id)).await
    }
    async fn purge_changes(&self, before: &Timestamp) -> StoreResult<usize> {
        let before = before.clone();
        self.write(move |t| directory::purge_changes(t, &before)).await
    }
    fn subscribe_commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.commits()
    }
}

impl DeliveryStore for SqlStore {
    async fn add_target(&self, tenant_id: i64, target: NewTarget) -> StoreResult<Target> {
        self.write(move |t| delivery::add(t, tenant_id, &target)).await
    }
    async fn targets(&self, tenant_id: Option<i64>) -> StoreResult<Vec<Target>> {
        self.read(move |c| delivery::list(c, tenant_id)).await
    }
    async fn target(&self, id: i64) -> StoreResult<Option<Target>> {
        self.read(move |c| delivery::get(c, id)).await
    }
    async fn target_credential(&self, id: i64) -> StoreResult<Vec<u8>> {
        self.read(move |c| delivery::credential(c, id)).await
    }
    async fn set_target_credential(&self, id: i64, credential: Vec<u8>) -> StoreResult<()> {
        self.write(move |t| delivery::set_credential(t, id, &credential)).await
    }
    async fn update_target(&self, id: i64, change: TargetChange) -> StoreResult<Target> {
        self.write(move |t| delivery::update(t, id, &change)).await
    }
    async fn remove_target(&self, id: i64) -> StoreResult<()> {
        self.write(move |t| delivery::remove(t, id)).await
    }
    async fn delivery_epoch(&self) -> StoreResult<i64> {
        self.read(|c| delivery::epoch(c)).await
    }
    async fn record_progress(&self, id: i64, progress: Progress) -> StoreResult<()> {
        self.write(move |t| delivery::progress(t, id, &progress)).await
    }
    async fn mapped(&self, target_id: i64, resource: &str, uid: &str) -> StoreResult<Option<Mapped>> {
        let (resource, uid) = (resource.to_string(), uid.to_string());
        self.read(move |c| delivery::mapped(c, target_id, &resource, &uid)).await
    }
    async fn all_mapped(&self, target_id: i64, resource: &str) -> StoreResult<Vec<Mapped>> {
        let resource = resource.to_string();
        self.read(move |c| delivery::all_mapped(c, target_id, &resource)).await
    }
    async fn map(&self, target_id: i64, m: Mapped) -> StoreResult<()> {
        self.write(move |t| delivery::map(t, target_id, &m)).await
    }
    async fn unmap(&self, target_id: i64, resource: &str, uid: &str) -> StoreResult<()> {
        let (resource, uid) = (resource.to_string(), uid.to_string());
        self.write(move |t| delivery::unmap(t, target_id, &resource, &uid)).await
    }
    async fn park(&self, target_id: i64, letters: Vec<NewDeadLetter>, cursor: i64) -> StoreResult<()> {
        self.write(move |t| delivery::park(t, target_id, &letters, cursor)).await
    }
    async fn dead_letters(&self, target_id: i64, open_only: bool) -> StoreResult<Vec<DeadLetter>> {
        self.read(move |c| delivery::dead_letters(c, target_id, open_only)).await
    }
    async fn decide_dead(&self, target_id: i64, ids: Option<Vec<i64>>, decision: DeadState, by: &str) -> StoreResult<Vec<DeadLetter>> {
        let by = by.to_string();
        self.write(move |t| delivery::decide(t, target_id, ids.as_deref(), decision, &by)).await
    }
    async fn settle_dead(&self, id: i64, state: DeadState, attempts: u32, answer: Option<String>) -> StoreResult<()> {
        self.write(move |t| delivery::settle(t, id, state, attempts, answer.as_deref())).await
    }
    async fn add_shape_version(&self, target_id: i64, entries: Vec<ChainEntryDef>, note: VersionNote, activate: bool) -> StoreResult<ShapeVersion> {
        self.write(move |t| shapes::add(t, target_id, &entries, &note, activate)).await
    }
    async fn shape_versions(&self, target_id: i64) -> StoreResult<Vec<ShapeVersion>> {
        self.read(move |c| shapes::versions(c, target_id)).await
    }
    async fn activate_shape_version(&self, target_id: i64, number: Option<i64>, author: &str) -> StoreResult<()> {
        let author = author.to_string();
        self.write(move |t| shapes::activate_version(t, target_id, number, &author)).await
    }
    async fn shape_activations(&self, target_id: i64) -> StoreResult<Vec<ShapeActivation>> {
        self.read(move |c| shapes::activations(c, target_id)).await
    }
}
