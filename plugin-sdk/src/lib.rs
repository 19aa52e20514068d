//! # The Mapwright plugin SDK
//!
//! A Mapwright rule plugin is a WebAssembly component that makes some of the decisions the
//! server takes when an identity provider pushes a user or group: which **username** the
//! directory stores, which application **groups** an IdP group becomes, which **attributes**
//! the directory entry gets, and what **deprovisioning** does. Plugins are chained per IdP
//! connection; each receives the previous entry's proposal and returns its own.
//!
//! Write a type, implement [`Plugin`] for it (every hook defaults to passing its input
//! through), and export it:
//!
//! ```
//! use mapwright_plugin_sdk::{Context, Decision, Hook, Plugin, Rejection, User};
//!
//! #[derive(Default, serde::Deserialize)]
//! struct Config {
//!     /// Usernames get this suffix.
//!     suffix: String,
//! }
//!
//! struct Suffix;
//!
//! impl Plugin for Suffix {
//!     type Config = Config;
//!     const NAME: &'static str = "suffix";
//!     const HOOKS: &'static [Hook] = &[Hook::Username];
//!
//!     fn username(_ctx: &Context, config: &Config, _user: &User, proposed: &str) -> Result<Decision<String>, Rejection> {
//!         Ok(Decision::new(format!("{proposed}{}", config.suffix)).because("suffix", "configured suffix"))
//!     }
//! }
//!
//! mapwright_plugin_sdk::export_plugin!(Suffix);
//!
//! // Plugin logic is plain Rust: test it natively, no Wasm needed.
//! let out = mapwright_plugin_sdk::testing::username::<Suffix>(
//!     r#"{"suffix": "-ext"}"#,
//!     r#"{"userName": "jdoe"}"#,
//! );
//! assert_eq!(out.unwrap().value, "jdoe-ext");
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` and load the `.wasm` into a
//! chain (the [`guide`] walks through it). The sandbox grants no filesystem, network,
//! environment or real clock: a plugin is a pure function of its inputs.
#![deny(missing_docs)]

extern crate self as mapwright_plugin_sdk;

mod adapter;
mod attr_path;

// A plugin call parses JSON into many small values and drops them all on return: talc serves
// that pattern faster than dlmalloc (see the `talc` feature). Single-threaded wasm only,
// which is what a component runs in.
#[cfg(all(feature = "talc", target_family = "wasm", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();
// The server's own rule for names, compiled here from its source rather than pulled in as a
// dependency: that crate would bring its serde_json features into every plugin.
#[path = "../../scim/src/names.rs"]
pub mod names;
#[cfg(feature = "regex")]
mod pattern;
mod scim;
pub mod testing;

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

#[cfg(feature = "regex")]
pub use pattern::Pattern;
pub use scim::{Group, User};
pub use serde_json::{Map, Value, json};

/// Generated bindings of the WIT contract (`wit/plugin.wit`). Plugin authors do not need them.
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "rules",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_rules",
        default_bindings_module: "mapwright_plugin_sdk::bindings",
        runtime_path: "mapwright_plugin_sdk::__wit_bindgen::rt",
    });
}

#[doc(hidden)]
pub use adapter::{Adapter, CrateVersion};
pub use attr_path::AttrPath;

/// The how-to of the README. Its example is compiled twice: here as a doc test (the plugin),
/// and as `tests/readme_example.rs` (the plugin and its tests, run by `cargo test`).
#[doc = include_str!("../README.md")]
#[allow(clippy::test_attr_in_doctest)]
pub mod guide {}

/// The hooks a plugin can implement; list yours in [`Plugin::HOOKS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// [`Plugin::username`]
    Username,
    /// [`Plugin::map_group`] and [`Plugin::user_memberships`]
    Groups,
    /// [`Plugin::attributes`]
    Attributes,
    /// [`Plugin::deprovision`] and [`Plugin::reactivate`]
    Deprovision,
    /// [`Plugin::shape`]: what a delivery target receives (contract 0.1.2). A plugin that
    /// lists it can be put in a target's shape chain.
    Shape,
    /// [`Plugin::in_scope`]: whether a user is provisioned at all (contract 0.1.2).
    Scope,
}

/// The SCIM operation behind a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// POST
    Create,
    /// PUT
    Replace,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
    /// The rules are re-applied to stored data (no IdP request).
    Reapply,
}

/// Where a call comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// The tenant (one application's directory).
    pub tenant: String,
    /// The IdP connection that sent the request.
    pub idp: String,
    /// The IdP's kind: `okta`, `entra`, `generic`, ...
    pub idp_kind: String,
    /// The operation.
    pub operation: Operation,
    /// The directory entry as it is now (before this change), read-only: `userName`,
    /// `active`, `attributes`, `groups`. `None` when the user is new to the directory.
    pub current: Option<Value>,
}

impl Context {
    /// A context for tests: tenant `test`, IdP `test` of kind `generic`, operation create.
    ///
    /// ```
    /// let ctx = mapwright_plugin_sdk::Context::test();
    /// assert_eq!(ctx.idp_kind, "generic");
    /// ```
    pub fn test() -> Context {
        Context { tenant: "test".into(), idp: "test".into(), idp_kind: "generic".into(), operation: Operation::Create, current: None }
    }
}

/// Why a decision was made: recorded by the server with every change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// The rule that decided, e.g. `username.email-local-part`.
    pub rule: String,
    /// A short human-readable reason.
    pub reason: String,
}

/// A decision and, optionally, why it was made.
///
/// ```
/// use mapwright_plugin_sdk::Decision;
/// let d = Decision::new("jdoe".to_string()).because("username.local-part", "from jane.doe@acme.com");
/// assert_eq!(d.provenance.unwrap().rule, "username.local-part");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<T> {
    /// The decided value.
    pub value: T,
    /// Why; `None` for a pass-through.
    pub provenance: Option<Provenance>,
}

impl<T> Decision<T> {
    /// A decision without a recorded reason (use it for pass-through).
    pub fn new(value: T) -> Self {
        Decision { value, provenance: None }
    }

    /// Records which rule decided and why.
    pub fn because(mut self, rule: impl Into<String>, reason: impl Into<String>) -> Self {
        self.provenance = Some(Provenance { rule: rule.into(), reason: reason.into() });
        self
    }
}

/// A refusal: the IdP's request fails with 400 and this reason, and nothing is written.
///
/// ```
/// use mapwright_plugin_sdk::Rejection;
/// let r = Rejection::new("username.require", "'Bob Smith' does not match ^[a-z]+$");
/// assert!(r.reason.contains("does not match"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The rule that refused.
    pub rule: String,
    /// Why, shown to the IdP in the SCIM error detail.
    pub reason: String,
}

impl Rejection {
    /// A rejection by `rule` because of `reason`.
    pub fn new(rule: impl Into<String>, reason: impl Into<String>) -> Self {
        Rejection { rule: rule.into(), reason: reason.into() }
    }
}

/// Membership changes for one user, as deltas of application group names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memberships {
    /// Groups to add the user to.
    pub add: Vec<String>,
    /// Groups to remove the user from.
    pub remove: Vec<String>,
}

/// What deactivating or deleting a user does to its directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Keep the entry, marked inactive.
    Disable,
    /// Remove the entry after this many days (0: at once).
    Delete {
        /// Retention before the purge.
        retention_days: u32,
    },
    /// Keep the entry active but remove its group memberships.
    StripGroups,
    /// Change nothing.
    Keep,
}

/// What led to deprovisioning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The IdP set `active` to false.
    Deactivated,
    /// The IdP deleted the user.
    Deleted,
}

/// The kind of resource a shaping rule is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceType {
    /// A directory user (SCIM `User`).
    User,
    /// An application group (SCIM `Group`).
    Group,
}

/// The delivery target a resource is shaped for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The tenant whose directory it is.
    pub tenant: String,
    /// The target's name.
    pub name: String,
    /// `scim` (an application's SCIM endpoint) or `webhook`.
    pub kind: String,
}

impl Target {
    /// A target for tests: tenant `test`, a SCIM target named `app`.
    ///
    /// ```
    /// assert_eq!(mapwright_plugin_sdk::Target::test().kind, "scim");
    /// ```
    pub fn test() -> Target {
        Target { tenant: "test".into(), name: "app".into(), kind: "scim".into() }
    }
}

/// A resource as a delivery target receives it, and every change made to it on the way.
///
/// ```
/// use mapwright_plugin_sdk::{Shaped, json};
/// let s = Shaped::new(json!({"userName": "jdoe"})).because("shape.set", "userType = \"Employee\"");
/// assert_eq!(s.provenance.len(), 1);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Shaped {
    /// The SCIM resource (a JSON object).
    pub resource: Value,
    /// Why it differs from what came in, one entry per change (empty: passed through).
    pub provenance: Vec<Provenance>,
}

impl Shaped {
    /// The resource, unchanged so far.
    pub fn new(resource: Value) -> Self {
        Shaped { resource, provenance: Vec::new() }
    }

    /// Records one change: which rule made it and what it did.
    pub fn because(mut self, rule: impl Into<String>, reason: impl Into<String>) -> Self {
        self.provenance.push(Provenance { rule: rule.into(), reason: reason.into() });
        self
    }
}

/// A rule plugin. Implement the hooks you list in [`Plugin::HOOKS`]; every other hook passes
/// its input through (and the server never calls it).
pub trait Plugin: 'static {
    /// This plugin's configuration for one chain entry, parsed from the entry's JSON.
    type Config: serde::de::DeserializeOwned + 'static;

    /// The plugin's name, shown in provenance and errors.
    const NAME: &'static str;

    /// The plugin's version, as `mapwright plugin inspect` and the admin API show it. Left
    /// empty (the default), it is the `version` of the crate that calls [`export_plugin!`].
    const VERSION: &'static str = "";

    /// The hooks this plugin implements.
    const HOOKS: &'static [Hook];

    /// Checks a parsed configuration beyond its shape (regexes compile, values are in range).
    /// Called when a chain is loaded, so a bad configuration is refused before any request.
    fn validate(_config: &Self::Config) -> Result<(), String> {
        Ok(())
    }

    /// Runs the plugin's own examples with this configuration before a chain version that
    /// uses it goes live; an `Err` (say, the first failing example) refuses the version and
    /// the active rules keep serving. Called once per activation, after [`Plugin::validate`].
    ///
    /// ```
    /// use mapwright_plugin_sdk::{testing, Context, Decision, Hook, Plugin, Rejection, User};
    /// struct Lower;
    /// impl Plugin for Lower {
    ///     type Config = ();
    ///     const NAME: &'static str = "lower";
    ///     const HOOKS: &'static [Hook] = &[Hook::Username];
    ///     fn username(_: &Context, _: &(), _: &User, proposed: &str) -> Result<Decision<String>, Rejection> {
    ///         Ok(Decision::new(proposed.to_lowercase()))
    ///     }
    ///     fn self_test(config: &()) -> Result<(), String> {
    ///         let out = testing::username::<Lower>("null", r#"{"userName": "Jane"}"#).map_err(|r| r.reason)?;
    ///         if out.value == "jane" { Ok(()) } else { Err(format!("Jane became {}", out.value)) }
    ///     }
    /// }
    /// assert!(Lower::self_test(&()).is_ok());
    /// ```
    fn self_test(_config: &Self::Config) -> Result<(), String> {
        Ok(())
    }

    /// The username to store. `proposed` is the IdP's userName or the previous entry's
    /// decision.
    fn username(_ctx: &Context, _config: &Self::Config, _user: &User, proposed: &str) -> Result<Decision<String>, Rejection> {
        Ok(Decision::new(proposed.to_string()))
    }

    /// Whether this configuration offers usernames as candidates ([`Plugin::username_candidates`]):
    /// the host then asks that instead of [`Plugin::username`]. Default: no.
    fn offers_candidates(_config: &Self::Config) -> bool {
        false
    }

    /// Usernames in order of preference: the host takes the first one no other directory
    /// entry has, atomically with the write, and records which and why (Entra's
    /// `SelectUniqueValue`). A user whose name is among them keeps it. Asked instead of
    /// [`Plugin::username`] when [`Plugin::offers_candidates`] says so; by default, that one
    /// name.
    ///
    /// ```
    /// use mapwright_plugin_sdk::{Context, Decision, Hook, Plugin, Rejection, User};
    /// struct Numbered;
    /// impl Plugin for Numbered {
    ///     type Config = ();
    ///     const NAME: &'static str = "numbered";
    ///     const HOOKS: &'static [Hook] = &[Hook::Username];
    ///     fn offers_candidates(_: &()) -> bool { true }
    ///     fn username_candidates(_: &Context, _: &(), _: &User, proposed: &str) -> Result<Decision<Vec<String>>, Rejection> {
    ///         let all = std::iter::once(proposed.to_string()).chain((2..10).map(|n| format!("{proposed}{n}"))).collect();
    ///         Ok(Decision::new(all).because("numbered", "jdoe, then jdoe2, …"))
    ///     }
    /// }
    /// let d = Numbered::username_candidates(&Context::test(), &(), &User::from_json(r#"{"userName": "x"}"#).unwrap(), "jdoe").unwrap();
    /// assert_eq!(&d.value[..2], ["jdoe", "jdoe2"]);
    /// ```
    fn username_candidates(ctx: &Context, config: &Self::Config, user: &User, proposed: &str) -> Result<Decision<Vec<String>>, Rejection> {
        let d = Self::username(ctx, config, user, proposed)?;
        Ok(Decision { value: vec![d.value], provenance: d.provenance })
    }

    /// The application groups an IdP group becomes (empty: the group is not synced).
    fn map_group(_ctx: &Context, _config: &Self::Config, _group: &Group, proposed: Vec<String>) -> Result<Decision<Vec<String>>, Rejection> {
        Ok(Decision::new(proposed))
    }

    /// Adjusts one user's membership changes: add defaults, veto removals.
    fn user_memberships(_ctx: &Context, _config: &Self::Config, _user: &User, _is_new: bool, proposed: Memberships) -> Result<Decision<Memberships>, Rejection> {
        Ok(Decision::new(proposed))
    }

    /// The directory entry's attributes (a JSON object).
    fn attributes(_ctx: &Context, _config: &Self::Config, _user: &User, proposed: Value) -> Result<Decision<Value>, Rejection> {
        Ok(Decision::new(proposed))
    }

    /// What deactivation or deletion does.
    fn deprovision(_ctx: &Context, _config: &Self::Config, _user: &User, _trigger: Trigger, proposed: Action) -> Result<Decision<Action>, Rejection> {
        Ok(Decision::new(proposed))
    }

    /// Whether reactivation restores what was snapshotted at deactivation.
    fn reactivate(_ctx: &Context, _config: &Self::Config, _user: &User, proposed: bool) -> Result<Decision<bool>, Rejection> {
        Ok(Decision::new(proposed))
    }

    /// Whether the user is provisioned at all (list [`Hook::Scope`]). An out-of-scope user
    /// stays in the IdP's view (its reads and updates work, the IdP sees no error) but gets
    /// no directory entry; when it comes into scope the entry appears, when it leaves the
    /// deprovision rules apply. `groups` are the display names of the connection's IdP groups
    /// the user belongs to: none when it is created (IdPs send memberships after the user;
    /// it is asked again then). `proposed` is the previous entry's decision.
    ///
    /// ```
    /// use mapwright_plugin_sdk::{testing, Context, Decision, Hook, Plugin, Rejection, User};
    /// /// Only members of an `eng-` group are provisioned.
    /// struct Engineers;
    /// impl Plugin for Engineers {
    ///     type Config = ();
    ///     const NAME: &'static str = "engineers";
    ///     const HOOKS: &'static [Hook] = &[Hook::Scope];
    ///     fn in_scope(_: &Context, _: &(), _: &User, groups: &[String], proposed: bool) -> Result<Decision<bool>, Rejection> {
    ///         let eng = groups.iter().any(|g| g.starts_with("eng-"));
    ///         Ok(Decision::new(proposed && eng).because("engineers.group", if eng { "in an eng- group" } else { "in no eng- group" }))
    ///     }
    /// }
    /// let user = r#"{"userName": "jdoe"}"#;
    /// assert_eq!(testing::in_scope::<Engineers>("null", user, &["eng-platform"]).unwrap().value, true);
    /// assert_eq!(testing::in_scope::<Engineers>("null", user, &[]).unwrap().value, false);
    /// ```
    fn in_scope(_ctx: &Context, _config: &Self::Config, _user: &User, _groups: &[String], proposed: bool) -> Result<Decision<bool>, Rejection> {
        Ok(Decision::new(proposed))
    }

    /// Whether this configuration decides scope (for a plugin that lists [`Hook::Scope`]).
    /// A connection whose entries do not scope never asks them, and its group writes do not
    /// re-decide the scope of their members: say no when the configuration has no scope rule.
    fn scopes(_config: &Self::Config) -> bool {
        true
    }

    /// Shapes a user or group for one delivery target (list [`Hook::Shape`]): `resource` is
    /// the SCIM resource as the target would receive it, after the previous entries of the
    /// target's shape chain. Return it changed, with a reason per change; a [`Rejection`]
    /// holds this change back for this target only (parked with your reason).
    ///
    /// ```
    /// use mapwright_plugin_sdk::{testing, Hook, Plugin, Rejection, ResourceType, Shaped, Target, Value};
    /// /// Sends users to a target that has no enterprise extension without it.
    /// struct NoEnterprise;
    /// const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    /// impl Plugin for NoEnterprise {
    ///     type Config = ();
    ///     const NAME: &'static str = "no-enterprise";
    ///     const HOOKS: &'static [Hook] = &[Hook::Shape];
    ///     fn shape(_: &Target, _: &(), kind: ResourceType, mut resource: Value) -> Result<Shaped, Rejection> {
    ///         let dropped = kind == ResourceType::User && resource.as_object_mut().and_then(|o| o.remove(ENTERPRISE)).is_some();
    ///         let shaped = Shaped::new(resource);
    ///         Ok(if dropped { shaped.because("no-enterprise", "the enterprise extension is not sent") } else { shaped })
    ///     }
    /// }
    /// let out = testing::shape::<NoEnterprise>("null", ResourceType::User, &format!(r#"{{"userName": "jdoe", "{ENTERPRISE}": {{"department": "R&D"}}}}"#)).unwrap();
    /// assert_eq!(out.resource, mapwright_plugin_sdk::json!({"userName": "jdoe"}));
    /// ```
    fn shape(_target: &Target, _config: &Self::Config, _kind: ResourceType, resource: Value) -> Result<Shaped, Rejection> {
        Ok(Shaped::new(resource))
    }
}

/// Exports a [`Plugin`] implementation as the component's entry points. Call it once, at
/// the root of the plugin crate; the plugin's version is that crate's `version` unless
/// [`Plugin::VERSION`] says otherwise.
///
/// ```
/// use mapwright_plugin_sdk::{Hook, Plugin};
///
/// struct Nothing;
/// impl Plugin for Nothing {
///     type Config = ();
///     const NAME: &'static str = "nothing";
///     const HOOKS: &'static [Hook] = &[];
/// }
///
/// mapwright_plugin_sdk::export_plugin!(Nothing);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        // Expanded in the plugin crate: `env!` reads that crate's version, not the SDK's.
        #[doc(hidden)]
        pub struct __MapwrightCrateVersion;
        impl $crate::CrateVersion for __MapwrightCrateVersion {
            const VERSION: &'static str = env!("CARGO_PKG_VERSION");
        }
        // The component exports exist only in the Wasm build: natively the crate is plain
        // Rust, tested with `cargo test`.
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        type __MapwrightExportedPlugin = $crate::Adapter<$plugin, __MapwrightCrateVersion>;
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::__export_rules!(__MapwrightExportedPlugin with_types_in $crate::bindings);
    };
}

#[cfg(test)]
mod tests {
    /// The guide's example is a compiled file of this crate (`tests/readme_example.rs`, run
    /// by `cargo test`): the README must show it as it is.
    #[test]
    fn the_readme_shows_the_compiled_example() {
        let readme = include_str!("../README.md");
        let example = include_str!("../tests/readme_example.rs");
        assert!(readme.contains(&format!("```rust\n{example}```")), "README.md's example and tests/readme_example.rs differ");
    }
}
