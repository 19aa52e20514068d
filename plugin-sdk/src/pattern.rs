//! Regexes in plugin configurations.

use serde::{Deserialize, Deserializer};

/// A regular expression in a configuration, compiled once when the chain is loaded (an
/// invalid one refuses the configuration), then reused by every call.
///
/// ```
/// #[derive(serde::Deserialize)]
/// struct Config { only: mapwright_plugin_sdk::Pattern }
///
/// let c: Config = serde_json::from_str(r#"{"only": "^eng-"}"#).unwrap();
/// assert!(c.only.is_match("eng-platform"));
/// assert!(serde_json::from_str::<Config>(r#"{"only": "("}"#).is_err());
/// ```
#[derive(Debug, Clone)]
pub struct Pattern(regex_lite::Regex);

impl Pattern {
    /// Does the pattern match anywhere in `text`?
    pub fn is_match(&self, text: &str) -> bool {
        self.0.is_match(text)
    }

    /// Replaces every match (`$1` refers to capture groups).
    pub fn replace_all(&self, text: &str, with: &str) -> String {
        self.0.replace_all(text, with).into_owned()
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        regex_lite::Regex::new(&s).map(Pattern).map_err(|e| serde::de::Error::custom(format!("bad regex '{s}': {e}")))
    }
}
