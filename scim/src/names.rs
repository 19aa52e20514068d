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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_are_short_printable_and_not_blank() {
        assert!(is_valid_name("software_dev") && is_valid_name("José Müller") && is_valid_name(&"x".repeat(256)));
        for bad in ["", "  ", "a\nb", "tab\there", "\u{7f}"] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
        assert!(!is_valid_name(&"x".repeat(257)));
        assert_eq!(check_group_name("dev"), Ok(()));
        assert_eq!(check_group_name(" ").unwrap_err(), "group name \" \" is not 1-256 printable characters");
        assert_eq!(check_user_name("").unwrap_err(), "userName must be 1-256 printable characters, got 0 bytes");
    }
}
