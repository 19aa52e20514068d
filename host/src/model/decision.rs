//! [`Decision`]: why the rules made one choice. Plugins return it, the mapping pipeline
//! collects it in chain order, the audit trail records it with the change.

/// Which plugin decided, by which of its rules, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Decision {
    /// The plugin's name (or `guard`, `identity` for the server's own decisions).
    pub plugin: String,
    /// The rule within it, e.g. `username.email-local-part`.
    pub rule: String,
    /// A short reason for people.
    pub reason: String,
}

impl Decision {
    /// A decision by `plugin`'s `rule` because of `reason`.
    pub fn new(plugin: impl Into<String>, rule: impl Into<String>, reason: impl Into<String>) -> Decision {
        Decision { plugin: plugin.into(), rule: rule.into(), reason: reason.into() }
    }
}
