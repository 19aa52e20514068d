//! The rule lifecycle: storing plugins, making chain versions, activating them while the
//! server runs.
//!
//! Every activation goes the same way, whoever asks (configuration at start, the CLI, a
//! watched directory): build the chain from stored plugins (compile or reuse, validate
//! every entry's configuration), and only if that succeeds record the version as active and
//! swap it into the registry. A version that fails any step is refused and the active one
//! keeps serving. Requests hold the chain they started with (see `ChainRegistry`).
//!
//! Another process (the CLI) activates by writing the store; the server notices through
//! the store's rules epoch ([`RuleManager::sync`], polled) and swaps the same way.

use std::sync::Arc;

use crate::model::{Activation, ChainDefinition, ChainEntryDef, ChainVersion, IdpConnection, Limits, MatchPolicy, PluginRecord, ShadowDiff, VersionNote, VersionSource};
use crate::plugins::PluginError;
use crate::plugins::chain::{Chain, ChainRegistry, EntrySpec, PluginSource, Unavailable};
use crate::plugins::runtime::Runtime;
use crate::store::{Store, StoreError};

/// Why a rules change was refused.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// A plugin could not be loaded, or refused its configuration.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// One entry of a chain could not be loaded, or refused its configuration.
    #[error("entry {}: {error}", index + 1)]
    Entry {
        /// Which entry, from 0.
        index: usize,
        /// Why.
        #[source]
        error: PluginError,
    },
    /// The request names something that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request makes no sense as it stands (say, activating the active version).
    #[error("{0}")]
    Refused(String),
    /// The store failed.
    #[error("the store failed: {0}")]
    Store(#[source] StoreError),
}

impl From<StoreError> for RulesError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::InvalidReference(m) => RulesError::NotFound(m),
            other => RulesError::Store(other),
        }
    }
}

/// What is stored of rules, read without loading any: plugins, versions, activations,
/// shadow reports. A [`RuleManager`] has one; a command that only reads uses one alone.
pub struct RuleRecords<S: Store> {
    store: Arc<S>,
}

impl<S: Store> RuleRecords<S> {
    /// The records of `store`.
    pub fn new(store: Arc<S>) -> RuleRecords<S> {
        RuleRecords { store }
    }

    /// The plugins a tenant has stored or uses, newest first.
    pub async fn plugins(&self, tenant_id: i64) -> Result<Vec<PluginRecord>, RulesError> {
        Ok(self.store.list_plugins(tenant_id).await?)
    }

    /// The active version of every connection that has one.
    pub async fn active_versions(&self) -> Result<Vec<ChainVersion>, RulesError> {
        Ok(self.store.active_chains().await?)
    }

    /// A connection's versions (newest first) and activations (newest first).
    pub async fn history(&self, idp: &IdpConnection) -> Result<(Vec<ChainVersion>, Vec<Activation>), RulesError> {
        Ok((self.store.chain_versions(idp.id).await?, self.store.chain_activations(idp.id).await?))
    }

    /// One stored version of a connection.
    pub async fn version(&self, idp: &IdpConnection, number: i64) -> Result<ChainVersion, RulesError> {
        self.store
            .chain_versions(idp.id)
            .await?
            .into_iter()
            .find(|v| v.number == number)
            .ok_or_else(|| RulesError::NotFound(format!("{}/{} has no chain version {number}", idp.tenant, idp.name)))
    }

    /// The shadow version running for a connection, if any.
    pub async fn shadow_version(&self, idp: &IdpConnection) -> Result<Option<i64>, RulesError> {
        Ok(self.store.shadow_chains().await?.into_iter().find(|v| v.idp_id == idp.id).map(|v| v.number))
    }

    /// Where a shadow version (the running one when `number` is `None`) decided differently
    /// from the active rules, newest first.
    pub async fn shadow_report(&self, idp: &IdpConnection, number: Option<i64>, limit: usize) -> Result<(i64, Vec<ShadowDiff>), RulesError> {
        let number = match number {
            Some(n) => n,
            None => self.shadow_version(idp).await?.ok_or_else(|| RulesError::NotFound("no shadow version is running".into()))?,
        };
        Ok((number, self.store.shadow_diffs(idp.id, number, limit).await?))
    }
}

/// Where the plugin runtime finds a plugin's bytes again (to compile evicted code whose
/// artifact is gone): the store, by content hash.
struct StoredSources<S>(Arc<S>);

impl<S: Store + 'static> crate::plugins::runtime::PluginSources for StoredSources<S> {
    fn bytes<'a>(&'a self, hash: &'a str) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<u8>, String>> + Send + 'a>> {
        Box::pin(async move { self.0.plugin_bytes(hash).await.map_err(|e| format!("reading its stored bytes: {e}")) })
    }
}

/// The rule lifecycle of a server (or of one CLI command): plugins, versions, activation.
pub struct RuleManager<S: Store> {
    store: Arc<S>,
    records: RuleRecords<S>,
    runtime: Arc<Runtime>,
    registry: Arc<ChainRegistry>,
    /// Serialises activations and holds the rules epoch last synced, so that two swaps of
    /// one connection can never land in the registry in the opposite order of the store.
    synced: tokio::sync::Mutex<Option<i64>>,
}

impl<S: Store> RuleManager<S> {
    /// The lifecycle over `store`, loading plugins with `runtime` into `registry`.
    pub fn new(store: Arc<S>, runtime: Arc<Runtime>, registry: Arc<ChainRegistry>) -> RuleManager<S> {
        runtime.set_sources(Arc::new(StoredSources(store.clone())));
        RuleManager { records: RuleRecords::new(store.clone()), store, runtime, registry, synced: tokio::sync::Mutex::new(None) }
    }

    /// What is stored of rules.
    pub fn records(&self) -> &RuleRecords<S> {
        &self.records
    }

    /// The chains the connections run.
    pub fn registry(&self) -> &Arc<ChainRegistry> {
        &self.registry
    }

    /// The plugin engine.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// A stored version built as a chain (to preview, try or shadow), without activating it.
    pub async fn candidate(&self, idp: &IdpConnection, number: i64) -> Result<Chain, RulesError> {
        let v = self.records.version(idp, number).await?;
        Ok(self.build(&v.definition).await?.with_version(number))
    }

    /// Runs a stored version beside the active one (`None`: stops), after checking that it
    /// loads. A server swaps it in on its next [`RuleManager::sync`].
    pub async fn set_shadow(&self, idp: &IdpConnection, number: Option<i64>) -> Result<(), RulesError> {
        if let Some(n) = number {
            self.candidate(idp, n).await?;
        }
        Ok(self.store.set_shadow(idp.id, number).await?)
    }

    /// Makes the shadow version the active one and stops shadowing.
    pub async fn promote_shadow(&self, idp: &IdpConnection, author: &str) -> Result<ChainVersion, RulesError> {
        let n = self.records.shadow_version(idp).await?.ok_or_else(|| RulesError::NotFound("no shadow version to promote".into()))?;
        let v = self.activate(idp, n, author).await?;
        self.store.set_shadow(idp.id, None).await?;
        Ok(v)
    }

    /// Activates an earlier version again: `to`, or the one active before the current one.
    pub async fn rollback(&self, idp: &IdpConnection, to: Option<i64>, author: &str) -> Result<ChainVersion, RulesError> {
        let (versions, activations) = self.records.history(idp).await?;
        let current = versions.iter().find(|v| v.active).map(|v| v.number);
        let target = match to {
            Some(n) => n,
            // The version that was active before the current one took over.
            None => activations.iter().map(|a| a.number).find(|n| Some(*n) != current).ok_or_else(|| RulesError::NotFound("there is no earlier version to roll back to".into()))?,
        };
        if Some(target) == current {
            return Err(RulesError::Refused(format!("version {target} is already active")));
        }
        self.activate(idp, target, author).await
    }

    /// Checks that `bytes` is a plugin (compiles, implements the contract, describes itself)
    /// and stores it for the tenant. Storing the same bytes again is harmless.
    pub async fn add_plugin(&self, tenant_id: i64, bytes: Vec<u8>) -> Result<PluginRecord, RulesError> {
        let p = self.runtime.load(&bytes).await?;
        Ok(self.store.put_plugin(tenant_id, p.record(), bytes).await?)
    }

    /// The definition of a chain read from a chain file: paths relative to the file, limits
    /// defaulting to `tenant_limits`.
    pub async fn define_from_file(&self, idp: &IdpConnection, file: &std::path::Path, tenant_limits: &Limits) -> anyhow::Result<ChainDefinition> {
        let chain = super::chain_file::ChainFile::load(file)?;
        Ok(self.define(idp.tenant_id, &chain.specs(tenant_limits, file)?, chain.matching.policy()).await?)
    }

    /// The definition of a chain given as plugin sources (builtin or files): each plugin is
    /// checked and stored, and referred to by its hash.
    pub async fn define(&self, tenant_id: i64, specs: &[EntrySpec], matching: MatchPolicy) -> Result<ChainDefinition, RulesError> {
        let mut entries = Vec::with_capacity(specs.len());
        for s in specs {
            let rec = match &s.plugin {
                PluginSource::Stored(hash) => self.stored_plugin(tenant_id, hash).await?,
                other => self.add_plugin(tenant_id, other.bytes()?).await?,
            };
            entries.push(ChainEntryDef { plugin: rec.hash, name: rec.name, config: s.config.clone(), limits: s.limits });
        }
        Ok(ChainDefinition { entries, matching })
    }

    /// A plugin the tenant has stored, by its hash (or a unique prefix of at least 8 digits).
    async fn stored_plugin(&self, tenant_id: i64, hash: &str) -> Result<PluginRecord, RulesError> {
        let found: Vec<PluginRecord> = self.store.list_plugins(tenant_id).await?.into_iter().filter(|p| hash.len() >= 8 && p.hash.starts_with(hash)).collect();
        match found.len() {
            1 => Ok(found.into_iter().next().ok_or_else(|| RulesError::NotFound(hash.to_string()))?),
            0 => Err(RulesError::NotFound(format!("the tenant has no stored plugin sha256:{hash} (upload it with `mapwright plugin add`)"))),
            _ => Err(RulesError::NotFound(format!("sha256:{hash} matches several stored plugins; give more digits"))),
        }
    }

    /// Builds the chain a definition describes, off the request path: every plugin loaded
    /// (from the runtime's cache, the compiled-artifact cache, or compiled) and every
    /// configuration validated by its plugin.
    pub async fn build(&self, def: &ChainDefinition) -> Result<Chain, RulesError> {
        let mut loaded = Vec::with_capacity(def.entries.len());
        for (index, e) in def.entries.iter().enumerate() {
            let plugin = match self.runtime.cached(&e.plugin) {
                Some(p) => p,
                None => {
                    let bytes = self.store.plugin_bytes(&e.plugin).await.map_err(|err| match err {
                        StoreError::NotFound => RulesError::NotFound(format!("plugin {} ({}) is not stored", e.plugin, e.name)),
                        other => RulesError::Store(other),
                    })?;
                    if crate::plugins::runtime::content_hash(&bytes) != e.plugin {
                        return Err(RulesError::NotFound(format!("stored plugin {} ({}) is damaged: its bytes no longer match its hash; upload it again", e.plugin, e.name)));
                    }
                    self.runtime.load(&bytes).await.map_err(|error| RulesError::Entry { index, error })?
                }
            };
            loaded.push((plugin, e.config.clone(), e.limits));
        }
        let chain = Chain::build_indexed(&self.runtime, loaded).await.map_err(|(index, error)| RulesError::Entry { index, error })?;
        Ok(chain.with_matching(def.matching.clone()))
    }

    /// Validates a new chain version for a connection, records it as the active one, and
    /// swaps it in. Refused (nothing stored, nothing swapped) if any entry fails to load.
    pub async fn set_chain(&self, idp: &IdpConnection, def: ChainDefinition, note: VersionNote) -> Result<ChainVersion, RulesError> {
        let chain = self.build(&def).await?;
        let _order = self.synced.lock().await;
        let v = self.store.add_chain_version(idp.id, def, note, true).await?;
        self.registry.insert(idp.id, chain.with_version(v.number));
        tracing::info!(tenant = %idp.tenant, idp = %idp.name, version = v.number, entries = v.definition.entries.len(), "rule chain activated");
        Ok(v)
    }

    /// Stores a version without activating it (a candidate to preview, shadow, or activate
    /// later), after checking that it loads.
    pub async fn add_candidate(&self, idp: &IdpConnection, def: ChainDefinition, note: VersionNote) -> Result<ChainVersion, RulesError> {
        self.build(&def).await?;
        Ok(self.store.add_chain_version(idp.id, def, note, false).await?)
    }

    /// Makes an earlier (or later) version the active one again, after checking it still loads.
    pub async fn activate(&self, idp: &IdpConnection, number: i64, author: &str) -> Result<ChainVersion, RulesError> {
        let v = self.records.version(idp, number).await?;
        let chain = self.build(&v.definition).await?;
        let _order = self.synced.lock().await;
        let v = self.store.activate_chain_version(idp.id, number, author).await?;
        self.registry.insert(idp.id, chain.with_version(v.number));
        tracing::info!(tenant = %idp.tenant, idp = %idp.name, version = v.number, "rule chain version re-activated");
        Ok(v)
    }

    /// Applies the chain the configuration file declares for a connection, if it differs from
    /// what the configuration declared last time: editing the file changes the rules, while
    /// a restart with the same file keeps a version activated since (by the CLI, say).
    pub async fn apply_config(&self, idp: &IdpConnection, specs: &[EntrySpec], matching: MatchPolicy) -> Result<Option<ChainVersion>, RulesError> {
        let note = VersionNote { author: "config".into(), note: "declared in the configuration file".into(), source: VersionSource::Config };
        self.apply_source(idp, specs, matching, note).await
    }

    /// Activates the chain a source (configuration file, watched directory) declares, unless
    /// it is what that source declared last time.
    pub async fn apply_source(&self, idp: &IdpConnection, specs: &[EntrySpec], matching: MatchPolicy, note: VersionNote) -> Result<Option<ChainVersion>, RulesError> {
        let def = self.define(idp.tenant_id, specs, matching).await?;
        let versions = self.store.chain_versions(idp.id).await?;
        let unchanged = match versions.iter().find(|v| v.source == note.source) {
            Some(v) => v.definition == def,
            // Nothing recorded and nothing declared: the connection maps identically.
            None => def == ChainDefinition::default(),
        };
        if unchanged {
            return Ok(None);
        }
        self.set_chain(idp, def, note).await.map(Some)
    }

    /// Watches a directory holding a connection's `chain.toml` (and the components it names):
    /// a change is applied once the files have stayed the same for one poll (debounced, so a
    /// copy in progress is never loaded half way). A chain that fails to load is logged and
    /// the active one keeps serving until the files change again.
    pub fn watch_dir(self: Arc<Self>, idp: IdpConnection, dir: std::path::PathBuf, limits: Limits, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let (mut seen, mut applied): (Option<String>, Option<String>) = (None, None);
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let print = fingerprint(&dir).await;
                let stable = print.is_some() && print == seen;
                seen = print;
                if !stable || seen == applied {
                    continue;
                }
                applied = seen.clone();
                let file = dir.join("chain.toml");
                let loaded = super::chain_file::ChainFile::load(&file).and_then(|c| Ok((c.specs(&limits, &file)?, c.matching.policy())));
                let (specs, matching) = match loaded {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::error!(tenant = %idp.tenant, idp = %idp.name, error = format!("{e:#}"), "watched chain refused; the active rules keep serving");
                        continue;
                    }
                };
                let note = VersionNote { author: "watch".into(), note: format!("from {}", dir.display()), source: VersionSource::Watch };
                match self.apply_source(&idp, &specs, matching, note).await {
                    Ok(Some(v)) => tracing::info!(tenant = %idp.tenant, idp = %idp.name, version = v.number, "watched chain applied"),
                    Ok(None) => {}
                    Err(e) => tracing::error!(tenant = %idp.tenant, idp = %idp.name, error = %e, "watched chain refused; the active rules keep serving"),
                }
            }
        })
    }

    /// Loads every connection's active version that the registry does not run yet (all of
    /// them at start; afterwards those another process activated). A version that fails to
    /// load is logged and skipped: the connection keeps the chain it has.
    pub async fn sync(&self) -> Result<usize, RulesError> {
        let mut synced = self.synced.lock().await;
        let epoch = self.store.rules_epoch().await?;
        if *synced == Some(epoch) {
            return Ok(0);
        }
        let mut swapped = 0;
        for v in self.store.active_chains().await? {
            if self.registry.version_of(v.idp_id) == Some(v.number) {
                continue;
            }
            match self.build(&v.definition).await {
                Ok(chain) => {
                    self.registry.insert(v.idp_id, chain.with_version(v.number));
                    tracing::info!(idp_id = v.idp_id, version = v.number, "rule chain version loaded");
                    swapped += 1;
                }
                Err(e) if self.registry.has(v.idp_id) => {
                    tracing::error!(idp_id = v.idp_id, version = v.number, error = %e, "could not load the active rule chain version; keeping the current one")
                }
                Err(e) => {
                    // Nothing to keep (the server is starting): fail the connection's writes
                    // rather than map them without their rules.
                    tracing::error!(idp_id = v.idp_id, version = v.number, error = %e, "could not load the active rule chain version; the connection's writes fail until it is fixed");
                    self.registry.set(v.idp_id, Arc::new(Unavailable { version: v.number, reason: e.to_string() }));
                }
            }
        }
        let shadows = self.store.shadow_chains().await?;
        let running = self.registry.shadow_versions();
        for (idp_id, _) in running.iter().filter(|(id, _)| !shadows.iter().any(|v| v.idp_id == **id)) {
            self.registry.set_shadow(*idp_id, None);
            tracing::info!(idp_id, "shadow evaluation stopped");
        }
        for v in shadows {
            if running.get(&v.idp_id) == Some(&Some(v.number)) {
                continue;
            }
            match self.build(&v.definition).await {
                Ok(chain) => {
                    self.registry.set_shadow(v.idp_id, Some(chain.with_version(v.number)));
                    tracing::info!(idp_id = v.idp_id, version = v.number, "shadow evaluation started");
                }
                Err(e) => tracing::error!(idp_id = v.idp_id, version = v.number, error = %e, "could not load the shadow chain version"),
            }
        }
        *synced = Some(epoch);
        Ok(swapped)
    }

    /// Polls the rules epoch and syncs when it moves, until the returned task is dropped.
    pub fn watch_store(self: Arc<Self>, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = self.sync().await {
                    tracing::warn!(error = %e, "checking for rule changes failed");
                }
            }
        })
    }
}

/// A digest of the regular files of a directory (names and contents); `None` if it cannot
/// be read or has no `chain.toml`. Read on a blocking thread.
async fn fingerprint(dir: &std::path::Path) -> Option<String> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use sha2::{Digest, Sha256};
        let mut files: Vec<_> = std::fs::read_dir(&dir).ok()?.filter_map(Result::ok).filter(|e| e.file_type().is_ok_and(|t| t.is_file())).map(|e| e.path()).collect();
        files.sort();
        if !files.iter().any(|f| f.file_name().is_some_and(|n| n == "chain.toml")) {
            return None;
        }
        let mut h = Sha256::new();
        for f in files {
            h.update(f.to_string_lossy().as_bytes());
            h.update(std::fs::read(&f).ok()?);
        }
        Some(hex::encode(h.finalize()))
    })
    .await
    .ok()
    .flatten()
}
