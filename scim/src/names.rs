//! The one rule for the names the directory stores and rules produce: usernames and app
//! group names. At most 256 bytes, not blank, no control characters (they end up in URLs,
//! logs, terminals and other systems' identifiers).
//!
//! This file uses nothing outside `std`: the plugin SDK compiles it too (`#[path]`), so a
//! plugin refuses a bad name in its configuration with the very rule the server applies to
//! its output, without pulling this crate's dependencies into every plugin.

/// The longest name, in bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// Whether `name` may be stored as a username or an app group name.
///
/// ```
/// # use mapwright_scim::names::is_valid_name;
/// assert!(is_valid_name("software_dev"));
/// assert!(!is_valid_name("  "));
/// assert!(!is_valid_name("a\nb"));
/// assert!(!is_valid_name(&"x".repeat(257)));
/// ```
pub fn is_valid_name(name: &str) -> bool {
    !name.trim().is_empty() && name.len() <= MAX_NAME_BYTES && !name.chars().any(char::is_control)
}

/// [`is_valid_name`] for an app group name, with the reason when it is not.
pub fn check_group_name(name: &str) -> Result<(), String> {
    if is_valid_name(name) { Ok(()) } else { Err(format!("group name {name:?} is not 1-{MAX_NAME_BYTES} printable characters")) }
}

/// [`is_valid_name`] for a username, with the reason when it is not.
pub fn check_user_name(name: &str) -> Result<(), String> {
    if is_valid_name(name) { Ok(()) } else { Err(format!("userName must be 1-{MAX_NAME_BYTES} printable characters, got {} bytes", name.len())) }
}
