//! First-party plugins compiled into the binary by `build.rs`; chains name them
//! `builtin:<name>`.

include!(concat!(env!("OUT_DIR"), "/builtin.rs"));

/// The bytes of a builtin plugin by name.
pub fn get(name: &str) -> Option<&'static [u8]> {
    BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// Names of the builtin plugins.
pub fn names() -> impl Iterator<Item = &'static str> {
    BUILTIN.iter().map(|(n, _)| *n)
}
