//! The command line's grammar: every command, subcommand and flag (clap derives), and their
//! help texts. What each does is in the sibling modules.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::LogFormat;
use crate::model::IdpKind;

/// Mapwright: a SCIM 2.0 provisioning server with per-IdP mapping rules.
#[derive(Debug, Parser)]
#[command(name = "mapwright", version, propagate_version = true)]
pub struct Cli {
    /// Configuration file (TOML). Without it, the embedded example configuration is used.
    #[arg(long, global = true, env = "MAPWRIGHT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory holding the SQLite database (overrides the configuration).
    #[arg(long, global = true, env = "MAPWRIGHT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// A PostgreSQL database (`postgres://user:password@host/db`) instead of the SQLite file:
    /// several replicas given the same URL serve the same tenants (overrides `[store] url`).
    #[arg(long, global = true, env = "MAPWRIGHT_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// The URL clients reach the server at (behind a proxy, or when `serve --listen` moved it):
    /// `serve` announces it, and commands that print SCIM base URLs build them on it.
    #[arg(long, global = true, env = "MAPWRIGHT_PUBLIC_URL")]
    pub public_url: Option<String>,
    #[command(subcommand)]
    /// What to do.
    pub command: Command,
}

#[derive(Debug, Subcommand)]
/// The commands.
pub enum Command {
    /// Run the SCIM server.
    Serve(ServeArgs),
    /// Bring the database's schema up to date and exit (servers do it at start unless
    /// `[store] auto_migrate = false`).
    Migrate {
        #[arg(long)]
        /// Print JSON instead of text.
        json: bool,
    },
    /// Manage tenants (one application directory each).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage IdP connections (each with its own SCIM base URL and token).
    #[command(subcommand)]
    Idp(IdpCommand),
    /// Inspect, try and store rule plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Versions of an IdP connection's rule chain: set, show, history, rollback.
    #[command(subcommand)]
    Chain(ChainCommand),
    /// Apply the connection's active rules to everything it has provisioned (after a rule
    /// change), in batches, resumable, each change recorded.
    Reapply(ReapplyArgs),
    /// Destructive operations a connection's guard held: list, approve, reject.
    #[command(subcommand)]
    Held(HeldCommand),
    /// Delivery targets: the applications the directory is pushed into (SCIM) and the
    /// endpoints its changes are sent to (webhooks).
    #[command(subcommand)]
    Target(TargetCommand),
    /// Where the directory differs from what a connection's IdP says: entries it never
    /// touched, memberships changed outside its groups, deactivated users holding groups.
    Drift {
        /// The tenant.
        tenant: String,
        /// The IdP connection.
        idp: String,
        #[arg(long)]
        /// Print JSON instead of text.
        json: bool,
    },
    /// Create an admin API token (global, or scoped to one tenant), shown once.
    AdminToken {
        /// A name for the token (recorded as the actor of its changes).
        name: String,
        /// Scope the token to this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// A token that can only read the directory (`/directory/v1`): the one to give the
        /// application.
        #[arg(long)]
        directory: bool,
        /// A directory token that may also post the sign-ins the application verified
        /// (`POST /directory/v1/{tenant}/signins`).
        #[arg(long, conflicts_with = "directory")]
        signin: bool,
    },
    /// Query the audit trail: every change, who made it, and which rules decided.
    Audit(AuditArgs),
    /// Show why a directory entry is what it is: owners of its memberships, the IdP users
    /// that map to it, and the recorded decisions (with chain versions) that shaped it.
    Explain {
        /// The tenant.
        tenant: String,
        /// The entry's userName in the directory.
        user: String,
        #[arg(long)]
        /// Print JSON instead of text.
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
/// What `mapwright held` does.
pub enum HeldCommand {
    /// List held operations (pending ones unless `--all`).
    List {
        /// The tenant.
        tenant: String,
        #[arg(long)]
        /// Decided operations too, not only pending ones.
        all: bool,
        #[arg(long)]
        /// Print JSON instead of text.
        json: bool,
    },
    /// Apply held operations.
    Approve {
        /// The tenant.
        tenant: String,
        /// The held operations (ids from `mapwright held list`).
        ids: Vec<i64>,
        #[arg(long, env = "USER", default_value = "admin")]
        /// Who does it (recorded with the change).
        author: String,
    },
    /// Drop held operations: the entries stay as they are.
    Reject {
        /// The tenant.
        tenant: String,
        /// The held operations (ids from `mapwright held list`).
        ids: Vec<i64>,
        #[arg(long, env = "USER", default_value = "admin")]
        /// Who does it (recorded with the change).
        author: String,
    },
}

/// What `mapwright target` does.
#[derive(Debug, Subcommand)]
pub enum TargetCommand {
    /// Add a target; it starts with a reconciliation (SCIM), then follows every change.
    Add(TargetAddArgs),
    /// List the targets with their lag and state.
    List {
        /// Only this tenant's targets.
        tenant: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// A target's state: lag, last success and error, parked events.
    Show {
        /// The tenant.
        tenant: String,
        /// The target.
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove a target (what it created in the application stays there).
    Remove {
        /// The tenant.
        tenant: String,
        /// The target.
        name: String,
    },
    /// Stop delivering to a target; its changes wait in the feed.
    Pause {
        /// The tenant.
        tenant: String,
        /// The target.
        name: String,
    },
    /// Deliver to a paused target again, from where it stopped.
    Resume {
        /// The tenant.
        tenant: String,
        /// The target.
        name: String,
    },
    /// Reconcile a SCIM target with the directory: create what is missing, update what
    /// differs, deactivate what is gone.
    Sync {
        /// The tenant.
        tenant: String,
        /// The target.
        name: String,
        /// Print what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Try parked events again, in order per resource.
    Retry(DeadArgs),
    /// Give parked events up; the events held behind them then go.
    Skip(DeadArgs),
    /// What a target receives: its shape rules (versions, preview, activation, explanation).
    #[command(subcommand)]
    Shape(ShapeCommand),
    /// A new credential: a webhook target gets a new secret (the old one keeps signing during
    /// the overlap); a SCIM target takes the token given.
    RotateSecret {
        /// The tenant.
        tenant: String,
        /// The target.
        name: String,
        /// Seconds the previous webhook secret keeps signing beside the new one.
        #[arg(long, default_value_t = 86_400)]
        overlap_secs: u64,
        /// A SCIM target's new bearer token.
        #[arg(long)]
        token: Option<String>,
    },
}

/// What `mapwright target shape` does.
#[derive(Debug, Subcommand)]
pub enum ShapeCommand {
    /// Store a shape version from a file (`[[entry]]`s of shaping plugins) and activate it, or
    /// keep it as a candidate to preview.
    Set {
        /// The tenant.
        tenant: String,
        /// The target.
        name: String,
        /// The shape file.
        #[arg(long)]
        file: std::path::PathBuf,
        /// Why (recorded with the version).
        #[arg(long, default_value = "")]
        note: String,
        /// Store it without activating it.
        #[arg(long)]
        candidate: bool,
        /// Who does it (recorded).
        #[arg(long, env = "USER", default_value = "admin")]
        author: String,
    },
    /// The target's shape versions and activations.
    History {
        /// The tenant.
        tenant: String,
        /// The target.
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Make a stored version the one the target runs (`none`: send resources unshaped). A SCIM
    /// target is reconciled after, so what it has takes the new shape.
    Activate {
        /// The tenant.
        tenant: String,
        /// The target.
        name: String,
        /// The version number, or `none`.
        #[arg(value_name = "VERSION")]
        number: String,
        /// Who does it (recorded).
        #[arg(long, env = "USER", default_value = "admin")]
        author: String,
    },
    /// What a candidate (a stored version, a file, or `none`) would change, on a sample of
    /// the directory; writes nothing.
    Preview {
        /// The tenant.
        tenant: String,
        /// The target.
        name: String,
        /// A stored version, or `none`.
        #[arg(value_name = "VERSION", conflicts_with = "file")]
        number: Option<String>,
        /// A shape file, not stored.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        /// Only this user.
        #[arg(long)]
        user: Option<String>,
        /// How many users and groups to look at.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// What the target receives of one user, and which rules made it so.
    Explain {
        /// The tenant.
        tenant: String,
        /// The target.
        name: String,
        /// The userName.
        user: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Arguments of `mapwright target add`.
#[derive(Debug, Args)]
pub struct TargetAddArgs {
    /// The tenant.
    pub tenant: String,
    /// The target's name.
    pub name: String,
    /// What the target speaks.
    #[arg(long, value_enum)]
    pub kind: crate::model::TargetKind,
    /// The SCIM base URL (e.g. https://app.example.com/scim/v2) or the webhook endpoint.
    #[arg(long)]
    pub url: String,
    /// SCIM: the bearer token.
    #[arg(long, env = "MAPWRIGHT_TARGET_TOKEN", conflicts_with = "oauth_token_url")]
    pub token: Option<String>,
    /// SCIM: OAuth 2.0 client credentials: the token endpoint.
    #[arg(long, requires_all = ["oauth_client_id", "oauth_client_secret"])]
    pub oauth_token_url: Option<String>,
    /// SCIM: OAuth client id.
    #[arg(long)]
    pub oauth_client_id: Option<String>,
    /// SCIM: OAuth client secret.
    #[arg(long, env = "MAPWRIGHT_TARGET_CLIENT_SECRET")]
    pub oauth_client_secret: Option<String>,
    /// SCIM: OAuth scope.
    #[arg(long)]
    pub oauth_scope: Option<String>,
    /// Webhook: the signing secret (`whsec_…`; default: a new one, printed once).
    #[arg(long)]
    pub secret: Option<String>,
    /// SCIM: send updates as PUT of the whole user instead of PATCH.
    #[arg(long)]
    pub put: bool,
    /// SCIM: delete users the directory no longer has, instead of deactivating them.
    #[arg(long)]
    pub delete_users: bool,
    /// Attempts at one event before it is parked.
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// The first retry's delay in milliseconds (doubling after).
    #[arg(long)]
    pub retry_base_ms: Option<u64>,
    /// The longest delay between retries in milliseconds.
    #[arg(long)]
    pub retry_max_ms: Option<u64>,
    /// How long one request may take, in milliseconds.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// SCIM: reconcile this often (seconds), repairing edits made in the target by hand.
    #[arg(long)]
    pub sync_every_secs: Option<u64>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Which parked events `target retry` and `target skip` take.
#[derive(Debug, Args)]
pub struct DeadArgs {
    /// The tenant.
    pub tenant: String,
    /// The target.
    pub name: String,
    /// The parked events (ids from `target show`).
    pub ids: Vec<i64>,
    /// Every parked event of the target.
    #[arg(long, conflicts_with = "ids")]
    pub all: bool,
    /// Who decides (recorded).
    #[arg(long, env = "USER", default_value = "admin")]
    pub author: String,
}

#[derive(Debug, Args)]
/// Arguments of `mapwright reapply`.
pub struct ReapplyArgs {
    /// The tenant.
    pub tenant: String,
    /// The IdP connection.
    pub idp: String,
    /// Continue the connection's unfinished job (after a crash or a kill).
    #[arg(long)]
    pub resume: bool,
    /// Only print the latest job's progress.
    #[arg(long, conflicts_with = "resume")]
    pub status: bool,
    /// Resources per batch (one short write transaction each).
    #[arg(long, default_value_t = crate::service::reapply::DEFAULT_BATCH)]
    pub batch: usize,
    /// Pause between batches, in milliseconds, to leave room for provisioning traffic.
    #[arg(long, default_value_t = 0)]
    pub pause_ms: u64,
    #[arg(long, env = "USER", default_value = "admin")]
    /// Who does it (recorded with the change).
    pub author: String,
    #[arg(long)]
    /// Print JSON instead of text.
    pub json: bool,
}

#[derive(Debug, Args)]
/// Arguments of `mapwright audit`.
pub struct AuditArgs {
    /// The tenant.
    pub tenant: String,
    /// Only changes that came through this IdP connection.
    #[arg(long)]
    pub idp: Option<String>,
    /// Only changes to this SCIM resource (a User or Group id).
    #[arg(long)]
    pub resource: Option<String>,
    /// Only changes to this directory entry (by its userName).
    #[arg(long)]
    pub user: Option<String>,
    /// From this time (RFC 3339, e.g. 2026-11-24T08:00:00Z).
    #[arg(long)]
    pub since: Option<String>,
    /// Until this time (RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
    /// At most this many records (newest first).
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Only records older than this record id (the next page).
    #[arg(long)]
    pub before: Option<i64>,
    #[arg(long)]
    /// Print JSON instead of text.
    pub json: bool,
}

#[derive(Debug, Subcommand)]
/// What `mapwright chain` does.
pub enum ChainCommand {
    /// Make a new chain version from a chain file and activate it (a running server picks it
    /// up within a second). Refused, with the reason, if any entry fails to load.
    Set {
        /// The tenant.
        tenant: String,
        /// The IdP connection.
        idp: String,
        /// The chain (TOML: `[[entry]]` tables with `plugin`, `config`, `limits`; optional
        /// `[matching]`). Plugin paths are relative to the file; `sha256:<hash>` names a
        /// stored plugin.
        #[arg(long)]
        file: PathBuf,
        /// Why: shown in the history.
        #[arg(long, default_value = "")]
        note: String,
        /// Who: shown in the history.
        #[arg(long, env = "USER", default_value = "admin")]
        author: String,
        /// Store the version without activating it (preview it, then `rollback --to N`).
        #[arg(long)]
        candidate: bool,
    },
    /// What a chain would change if applied to everything the connection has provisioned:
    /// usernames (and collisions), memberships, attributes, deprovisioning. Writes nothing.
    Preview {
        /// The tenant.
        tenant: String,
        /// The IdP connection.
        idp: String,
        /// A chain file to preview.
        #[arg(long, conflicts_with = "number", required_unless_present = "number")]
        file: Option<PathBuf>,
        /// A stored version to preview.
        #[arg(long)]
        number: Option<i64>,
        /// JSON: `{summary, total, items}` with `--offset`/`--limit` paging the items.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 0)]
        /// With --json: skip this many items.
        offset: usize,
        #[arg(long, default_value_t = 1000)]
        /// At most this many.
        limit: usize,
    },
    /// Run a stored version beside the active one on live traffic, writing nothing but where
    /// its decisions differ (`--off` stops it).
    Shadow {
        /// The tenant.
        tenant: String,
        /// The IdP connection.
        idp: String,
        #[arg(long, conflicts_with = "off", required_unless_present = "off")]
        /// The stored version to run in shadow.
        number: Option<i64>,
        #[arg(long)]
        /// Stop shadowing.
        off: bool,
    },
    /// Where the shadow version's decisions differed from the active ones, newest first.
    ShadowReport {
        /// The tenant.
        tenant: String,
        /// The IdP connection.
        idp: String,
        /// The shadow version (default: the one running now).
        #[arg(long)]
        number: Option<i64>,
        #[arg(long, default_value_t = 100)]
        /// At most this many.
        limit: usize,
        #[arg(long)]
        /// Print JSON instead of text.
        json: bool,
    },
    /// Make the shadow version the active one (and stop shadowing).
    Promote {
        /// The tenant.
        tenant: String,
        /// The IdP connection.
        idp: String,
        #[arg(long, env = "USER", default_value = "admin")]
        /// Who does it (recorded with the change).
        author: String,
    },
    /// Print the active version (or another one).
    Show {
        /// The tenant.
        tenant: String,
        /// The IdP connection.
        idp: String,
        /// The version number (default: the active one).
        #[arg(long)]
        number: Option<i64>,
        #[arg(long)]
        /// Print JSON instead of text.
        json: bool,
    },
    /// List every version and every activation.
    History {
        /// The tenant.
        tenant: String,
        /// The IdP connection.
        idp: String,
        #[arg(long)]
        /// Print JSON instead of text.
        json: bool,
    },
    /// Activate an earlier version again: the one active before the current one, or `--to`.
    Rollback {
        /// The tenant.
        tenant: String,
        /// The IdP connection.
        idp: String,
        #[arg(long)]
        /// The version to activate (default: the one active before the current one).
        to: Option<i64>,
        #[arg(long, env = "USER", default_value = "admin")]
        /// Who does it (recorded with the change).
        author: String,
    },
}

#[derive(Debug, Subcommand)]
/// What `mapwright plugin` does.
pub enum PluginCommand {
    /// Create a plugin project (Rust, JavaScript or Python) with a passing test, examples and
    /// its build command.
    New {
        /// The plugin's name: lower-case letters, digits and hyphens.
        name: String,
        /// The language.
        #[arg(long, value_enum)]
        lang: super::scaffold::Lang,
        /// Where to create it (must not exist, or be empty); `./NAME` by default.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Rust: the plugin SDK's directory (by default, the one this binary was built with).
        #[arg(long)]
        sdk: Option<PathBuf>,
        /// What was made, as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a plugin's name, version, hooks and contract version.
    Inspect {
        /// A component file, or `builtin:<name>`.
        plugin: String,
    },
    /// Run a plugin on a SCIM payload and print each decision it makes.
    Test {
        /// A component file, or `builtin:<name>`.
        #[arg(long)]
        plugin: String,
        /// The chain entry's configuration (a JSON file); none means `null`. (Not `--config`:
        /// that is the server's file, global to every command.)
        #[arg(long = "entry-config", id = "entry_config", value_name = "FILE")]
        config: Option<PathBuf>,
        /// A SCIM User (for the user hooks) or Group (for --hook groups) as JSON.
        #[arg(long, required_unless_present = "examples", conflicts_with = "examples")]
        input: Option<PathBuf>,
        /// A file of examples (JSON, or TOML ending in `.toml`): users and groups with the
        /// decisions expected of them, each reported; fails if one does not hold. Its `config`
        /// is used unless --entry-config is given.
        #[arg(long)]
        examples: Option<PathBuf>,
        /// With --examples: the outcomes as JSON.
        #[arg(long)]
        json: bool,
        /// Which decision to run: `user` (username, attributes, memberships), `group`, or what
        /// a delivery target receives: `shape-user`, `shape-group`.
        #[arg(long, value_enum, default_value = "user")]
        hook: TestHook,
        /// The IdP kind the plugin sees in its context.
        #[arg(long, value_enum, default_value = "generic")]
        kind: IdpKind,
    },
    /// List the plugins compiled into this binary.
    Builtins,
    /// Check a component and store it for a tenant (content-addressed), printing its hash.
    Add {
        /// The tenant.
        tenant: String,
        /// A component file, or `builtin:<name>`.
        plugin: String,
    },
    /// List the plugins stored for a tenant.
    List {
        /// The tenant.
        tenant: String,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
/// Which decisions `plugin test` runs.
pub enum TestHook {
    /// The user hooks: username, attributes, memberships.
    User,
    /// The group mapping.
    Group,
    /// Shaping a user for a delivery target (the input is the user as the target would
    /// receive it).
    ShapeUser,
    /// Shaping a group for a delivery target.
    ShapeGroup,
}

#[derive(Debug, Args)]
/// Arguments of `mapwright serve`.
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "MAPWRIGHT_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Log format.
    #[arg(long, env = "MAPWRIGHT_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

#[derive(Debug, Subcommand)]
/// What `mapwright tenant` does.
pub enum TenantCommand {
    /// Create a tenant.
    Add {
        /// Tenant name (used in SCIM URLs).
        name: String,
    },
    /// List tenants.
    List,
}

#[derive(Debug, Subcommand)]
/// What `mapwright idp` does.
pub enum IdpCommand {
    /// Create an IdP connection and print its SCIM base URL and bearer token (shown once).
    Add {
        /// The tenant.
        tenant: String,
        /// The connection's name (used in its SCIM URL).
        name: String,
        /// Which IdP this is; selects the dialect details where IdPs conflict.
        #[arg(long, value_enum, default_value = "generic")]
        kind: IdpKind,
        /// Sustained requests per second allowed (0 = unlimited).
        #[arg(long)]
        rate_per_second: Option<f64>,
        /// Requests allowed in a burst.
        #[arg(long)]
        burst: Option<u32>,
        /// What a group write does with a member this connection does not have: skip it
        /// (recorded) or reject the whole write.
        #[arg(long, value_enum, default_value = "skip")]
        unknown_members: crate::model::UnknownMembers,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Change an IdP connection's kind, rate limit or policies.
    Set {
        /// The tenant.
        tenant: String,
        /// The connection's name.
        name: String,
        /// Which IdP this is.
        #[arg(long, value_enum)]
        kind: Option<IdpKind>,
        /// Sustained requests per second allowed (0 = unlimited).
        #[arg(long)]
        rate_per_second: Option<f64>,
        /// Requests allowed in a burst.
        #[arg(long)]
        burst: Option<u32>,
        /// What a group write does with a member this connection does not have.
        #[arg(long, value_enum)]
        unknown_members: Option<crate::model::UnknownMembers>,
    },
    /// List IdP connections.
    List {
        /// Only this tenant's connections.
        tenant: Option<String>,
    },
    /// Issue a new bearer token; older tokens keep working for the overlap window.
    RotateToken {
        /// The tenant.
        tenant: String,
        /// The connection's name.
        name: String,
        /// Seconds the previous tokens stay valid (0 revokes them now).
        #[arg(long, default_value_t = 86_400)]
        overlap_secs: u64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}
