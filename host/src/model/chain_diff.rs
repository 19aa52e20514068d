//! What changed from one chain version to the next, entry by entry: the history's "what"
//! beside its "who" (console, admin API, `mapwright chain history`).

use serde::Serialize;
use serde_json::Value;

use super::{ChainDefinition, ChainVersion};

/// Each version's changes from the version numbered just before it (the first one's from an
/// empty chain), keyed by version number: what the history shows beside who made it.
pub fn history_changes(versions: &[ChainVersion]) -> std::collections::BTreeMap<i64, Vec<EntryChange>> {
    let mut sorted: Vec<&ChainVersion> = versions.iter().collect();
    sorted.sort_by_key(|v| v.number);
    let empty = ChainDefinition::default();
    let mut before = &empty;
    let mut out = std::collections::BTreeMap::new();
    for v in sorted {
        out.insert(v.number, v.definition.changes_since(before));
        before = &v.definition;
    }
    out
}

/// One difference between two chain definitions. Entries are numbered from 1, as people
/// count them; `name` is the plugin's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
#[allow(missing_docs)] // the variants' fields are named by the variant's doc
pub enum EntryChange {
    /// A new entry at `entry`.
    Added { entry: usize, name: String },
    /// The entry that was at `entry` is gone.
    Removed { entry: usize, name: String },
    /// The same plugin entry now runs at another place in the chain.
    Moved { from: usize, to: usize, name: String },
    /// The entry's configuration changed at these top-level keys.
    Config { entry: usize, name: String, keys: Vec<String> },
    /// The entry's sandbox limits changed.
    Limits { entry: usize, name: String },
    /// What a create does when the directory already has the user.
    Matching,
}

impl std::fmt::Display for EntryChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EntryChange::Added { entry, name } => write!(f, "added entry {entry}: {name}"),
            EntryChange::Removed { entry, name } => write!(f, "removed entry {entry}: {name}"),
            EntryChange::Moved { from, to, name } => write!(f, "moved {name} from entry {from} to {to}"),
            EntryChange::Config { entry, name, keys } => write!(f, "entry {entry} ({name}): configuration changed ({})", keys.join(", ")),
            EntryChange::Limits { entry, name } => write!(f, "entry {entry} ({name}): limits changed"),
            EntryChange::Matching => write!(f, "matching policy changed"),
        }
    }
}

/// The top-level keys at which two configurations differ (`(whole)` when either is not an
/// object).
fn changed_keys(before: &Value, after: &Value) -> Vec<String> {
    match (before, after) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<String> = a.keys().chain(b.keys()).filter(|k| a.get(*k) != b.get(*k)).cloned().collect();
            keys.sort();
            keys.dedup();
            keys
        }
        (a, b) if a == b => Vec::new(),
        _ => vec!["(whole)".into()],
    }
}

/// Which of the paired places (`Some(old index)`) form the longest increasing run, preferring
/// later ones on a tie (so in a swap, the entry that moved forward is the one reported).
fn longest_increasing(places: &[Option<usize>]) -> Vec<bool> {
    let n = places.len();
    let (mut len, mut prev) = (vec![0usize; n], vec![None; n]);
    for i in 0..n {
        let Some(p) = places[i] else { continue };
        len[i] = 1;
        for k in 0..i {
            if matches!(places[k], Some(q) if q < p) && len[k] + 1 >= len[i] {
                len[i] = len[k] + 1;
                prev[i] = Some(k);
            }
        }
    }
    let mut stays = vec![false; n];
    let best = (0..n).filter(|&i| len[i] > 0).max_by_key(|&i| (len[i], i));
    let mut at = best;
    while let Some(i) = at {
        stays[i] = true;
        at = prev[i];
    }
    stays
}

impl ChainDefinition {
    /// What changed from `before` to this definition. Entries pair up by plugin (the i-th use
    /// of a plugin before with its i-th use after); unpaired ones were added or removed.
    pub fn changes_since(&self, before: &ChainDefinition) -> Vec<EntryChange> {
        let mut used = vec![false; before.entries.len()];
        // For each entry now, the index of its pair before.
        let pairs: Vec<Option<usize>> = self
            .entries
            .iter()
            .map(|e| {
                let found = before.entries.iter().enumerate().position(|(i, b)| !used[i] && b.plugin == e.plugin);
                if let Some(i) = found {
                    used[i] = true;
                }
                found
            })
            .collect();
        let mut out = Vec::new();
        for (i, b) in before.entries.iter().enumerate() {
            if !used[i] {
                out.push(EntryChange::Removed { entry: i + 1, name: b.name.clone() });
            }
        }
        // Paired entries that keep their order relative to each other stay (the longest
        // increasing run of their old places); the others moved. An insertion or removal
        // elsewhere shifts places without moving anything.
        let stays = longest_increasing(&pairs);
        for (i, (e, pair)) in self.entries.iter().zip(&pairs).enumerate() {
            let Some(j) = *pair else {
                out.push(EntryChange::Added { entry: i + 1, name: e.name.clone() });
                continue;
            };
            if !stays[i] {
                out.push(EntryChange::Moved { from: j + 1, to: i + 1, name: e.name.clone() });
            }
            let was = &before.entries[j];
            let keys = changed_keys(&was.config, &e.config);
            if !keys.is_empty() {
                out.push(EntryChange::Config { entry: i + 1, name: e.name.clone(), keys });
            }
            if was.limits != e.limits {
                out.push(EntryChange::Limits { entry: i + 1, name: e.name.clone() });
            }
        }
        if self.matching != before.matching {
            out.push(EntryChange::Matching);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChainEntryDef, Limits};
    use serde_json::json;

    fn entry(plugin: &str, config: Value) -> ChainEntryDef {
        ChainEntryDef { plugin: plugin.into(), name: plugin.into(), config, limits: Limits::default() }
    }

    fn def(entries: Vec<ChainEntryDef>) -> ChainDefinition {
        ChainDefinition { entries, matching: Default::default() }
    }

    #[test]
    fn additions_removals_moves_and_config_keys_are_named() {
        let v1 = def(vec![entry("username", json!({"case": "lower", "source": "email"})), entry("groups", json!({})), entry("attributes", json!({}))]);
        let same = v1.changes_since(&v1);
        assert!(same.is_empty(), "{same:?}");
        // groups moved first, username's case changed, attributes removed, expr added.
        let v2 = def(vec![entry("groups", json!({})), entry("username", json!({"case": "upper", "source": "email"})), entry("expr", json!({"username": "x"}))]);
        let text: Vec<String> = v2.changes_since(&v1).iter().map(ToString::to_string).collect();
        assert_eq!(text, [
            "removed entry 3: attributes",
            "moved groups from entry 2 to 1",
            "entry 2 (username): configuration changed (case)",
            "added entry 3: expr",
        ]);
    }

    #[test]
    fn an_insertion_shifts_entries_without_moving_them() {
        let v1 = def(vec![entry("username", json!(null)), entry("groups", json!(null))]);
        let limits = Limits { cpu_ms: 5, ..Limits::default() };
        let v2 = def(vec![entry("scope", json!(null)), entry("username", json!(null)), ChainEntryDef { limits, ..entry("groups", json!(null)) }]);
        assert_eq!(v2.changes_since(&v1), [
            EntryChange::Added { entry: 1, name: "scope".into() },
            EntryChange::Limits { entry: 3, name: "groups".into() },
        ]);
        // The same plugin twice pairs in order.
        let twice = def(vec![entry("expr", json!({"a": 1})), entry("expr", json!({"a": 2}))]);
        let swapped = def(vec![entry("expr", json!({"a": 1})), entry("expr", json!({"a": 3}))]);
        assert_eq!(swapped.changes_since(&twice), [EntryChange::Config { entry: 2, name: "expr".into(), keys: vec!["a".into()] }]);
    }
}
