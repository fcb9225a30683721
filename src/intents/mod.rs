//! Intents: what a shopper wants, recognised by regex rules and by example utterances.
//!
//! Intents are data: one TOML file per intent in `intents/` (see [`definition`]). They are
//! validated once into an immutable [`IntentSet`]; its rules are compiled into one `RegexSet`
//! and matched before any knowledge search. Example utterances are indexed by the knowledge base
//! so that paraphrases the rules do not catch are still recognised.

mod definition;
pub mod template;

use std::path::Path;

use regex::{Regex, RegexSet};

pub use definition::{Action, IntentFile, Task, valid_task_name};

use crate::domain::LocalizedText;

/// A validated intent.
#[derive(Debug, Clone)]
pub struct Intent {
    /// Its name, e.g. `ask_for_human`.
    pub name: String,
    /// What it does when recognised.
    pub action: Action,
    /// What the bot says.
    pub response: LocalizedText,
    /// What the bot asks when a needed slot (an order number) is missing.
    pub ask: Option<LocalizedText>,
    /// Example utterances.
    pub examples: Vec<String>,
    /// The rules' source text, in file order.
    pub rules: Vec<String>,
    /// Slot extractors: name and pattern whose first group is the value.
    pub slots: Vec<(String, Regex)>,
    /// For a route intent: the FAQ tags or categories it stands for.
    pub topics: Vec<String>,
    /// For a task intent: the endpoint it calls and the replies it fills.
    pub task: Option<Task>,
    /// Breaks ties between intents of the same kind whose rules match one message: higher wins.
    pub priority: i32,
}

impl Intent {
    /// The slots a task needs, by name.
    pub fn slot_names(&self) -> impl Iterator<Item = &str> {
        self.slots.iter().map(|(name, _)| name.as_str())
    }

    /// The slot values found in `text`.
    pub fn extract_slots(&self, text: &str) -> Vec<(String, String)> {
        self.slots
            .iter()
            .filter_map(|(name, re)| {
                let caps = re.captures(text)?;
                let value = caps.get(1).or_else(|| caps.get(0))?;
                Some((name.clone(), value.as_str().to_owned()))
            })
            .collect()
    }
}

/// A rule that matched a message.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleMatch {
    /// Index of the intent in the set.
    pub intent: usize,
    /// The rule's source text.
    pub rule: String,
}

/// Every intent of a deployment, with the rules compiled.
#[derive(Debug, Clone)]
pub struct IntentSet {
    intents: Vec<Intent>,
    rules: RegexSet,
    /// For each compiled rule: (intent index, rule index within the intent).
    rule_owner: Vec<(usize, usize)>,
}

/// An intent file or set that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IntentError {
    /// The directory or a file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is not valid intent TOML.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl IntentSet {
    /// Loads every `*.toml` file in `dir`, in name order.
    pub fn load_dir(dir: &Path) -> Result<Self, IntentError> {
        Self::from_files(read_dir_files(dir)?)
    }

    /// The deployment's intents in `dir` with a store's overrides from `dir/stores/<store>/`:
    /// a file there replaces the intent of the same name, or adds a new one. Without such a
    /// directory, the store gets the deployment's intents.
    pub fn load_for_store(dir: &Path, store: &str) -> Result<Option<Self>, IntentError> {
        let overrides = dir.join("stores").join(store);
        if !overrides.is_dir() {
            return Ok(None);
        }
        let mut files = read_dir_files(dir)?;
        for (path, file) in read_dir_files(&overrides)? {
            match files.iter_mut().find(|(_, f)| f.name == file.name) {
                Some(slot) => *slot = (path, file),
                None => files.push((path, file)),
            }
        }
        Self::from_files(files).map(Some)
    }

    /// Validates parsed files (`(where it came from, file)`) into a set.
    pub fn from_files(files: Vec<(String, IntentFile)>) -> Result<Self, IntentError> {
        let mut intents = Vec::with_capacity(files.len());
        let mut patterns = Vec::new();
        let mut rule_owner = Vec::new();
        for (path, file) in files {
            if intents.iter().any(|i: &Intent| i.name == file.name) {
                return Err(IntentError::Invalid {
                    path,
                    message: format!("intent {:?} is defined twice", file.name),
                });
            }
            let intent = file.validate().map_err(|message| IntentError::Invalid { path, message })?;
            for (i, rule) in intent.rules.iter().enumerate() {
                patterns.push(definition::rule_pattern(rule));
                rule_owner.push((intents.len(), i));
            }
            intents.push(intent);
        }
        // Every pattern compiled on its own in `validate`, so the set compiles too.
        let rules = RegexSet::new(&patterns).map_err(|e| IntentError::Invalid {
            path: "intents".into(),
            message: format!("the rules do not compile together: {e}"),
        })?;
        Ok(Self { intents, rules, rule_owner })
    }

    /// The intents, in load order.
    pub fn intents(&self) -> &[Intent] {
        &self.intents
    }

    /// The intent at `index`.
    pub fn get(&self, index: usize) -> &Intent {
        &self.intents[index]
    }

    /// The intent named `name`.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.intents.iter().position(|i| i.name == name)
    }

    /// The most decisive rule matching `text`: handoffs first, then tasks, then replies; among
    /// intents of one kind, the higher priority, then the first in file order.
    pub fn match_rules(&self, text: &str) -> Option<RuleMatch> {
        let text = text.trim();
        // Most messages match no rule: `is_match` settles them on the fast DFA path, where
        // asking for every overlapping match would run the much slower PikeVM.
        if !self.rules.is_match(text) {
            return None;
        }
        self.rules
            .matches(text)
            .into_iter()
            .map(|k| self.rule_owner[k])
            .min_by_key(|&(intent, rule)| {
                let it = &self.intents[intent];
                (it.action.precedence(), std::cmp::Reverse(it.priority), intent, rule)
            })
            .map(|(intent, rule)| RuleMatch { intent, rule: self.intents[intent].rules[rule].clone() })
    }
}

/// Reads every `*.toml` intent file of `dir` (not its sub-directories), in name order.
fn read_dir_files(dir: &Path) -> Result<Vec<(String, IntentFile)>, IntentError> {
    let io = |source| IntentError::Io { path: dir.display().to_string(), source };
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(&path)
            .map_err(|source| IntentError::Io { path: shown.clone(), source })?;
        let file: IntentFile = toml::from_str(&text)
            .map_err(|e| IntentError::Invalid { path: shown.clone(), message: e.to_string() })?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        if file.name != stem {
            return Err(IntentError::Invalid {
                path: shown,
                message: format!("name {:?} must match the file name {stem:?}", file.name),
            });
        }
        files.push((shown, file));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_intents() -> IntentSet {
        IntentSet::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("intents")).expect("intents load")
    }

    fn matched(set: &IntentSet, text: &str) -> Option<String> {
        set.match_rules(text).map(|m| set.get(m.intent).name.clone())
    }

    #[test]
    fn shipped_intents_cover_the_basics() {
        let set = repo_intents();
        for name in [
            "greeting",
            "thanks",
            "goodbye",
            "ask_for_human",
            "complaint",
            "order_status",
            "return_refund",
            "shipping_logistics",
        ] {
            assert!(set.find(name).is_some(), "missing intent {name}");
        }
    }

    #[test]
    fn rules_match_what_they_should_and_nothing_else() {
        let set = repo_intents();
        let cases = [
            ("你好", Some("greeting")),
            ("Hello!", Some("greeting")),
            ("转人工", Some("ask_for_human")),
            ("can I talk to a real person", Some("ask_for_human")),
            ("我要投诉你们", Some("complaint")),
            ("我的订单 2026112312345678 到哪了", Some("order_status")),
            ("谢谢", Some("thanks")),
            ("再见", Some("goodbye")),
            ("你好，退货运费谁出", None),
            ("退货寄到哪个地址", None),
            ("我的快递到哪里了？", Some("order_status")),
            ("X1 多少钱", None),
            ("what colours does the X1 come in", None),
            // A task that names the order outranks the general lookup.
            ("订单2026112312345678 能快点发吗", Some("urge_shipping")),
            ("could you expedite my order 2026112312345678", Some("urge_shipping")),
            ("取消订单 2026112298765432", Some("cancel_order")),
        ];
        for (text, want) in cases {
            assert_eq!(matched(&set, text).as_deref(), want, "for {text:?}");
        }
    }

    #[test]
    fn order_numbers_are_extracted() {
        let set = repo_intents();
        let order = set.get(set.find("order_status").unwrap());
        let slots = order.extract_slots("订单号 2026112312345678 怎么还没到");
        assert_eq!(slots, vec![("order".to_owned(), "2026112312345678".to_owned())]);
    }

    #[test]
    fn a_bad_rule_is_a_precise_error() {
        let file: IntentFile = toml::from_str(
            "name = \"x\"\nrules = ['(unclosed']\nexamples = [\"x\"]\naction = \"reply\"\n[response]\nzh = \"好\"\n",
        )
        .unwrap();
        let err = IntentSet::from_files(vec![("x.toml".into(), file)]).unwrap_err().to_string();
        assert!(err.contains("x.toml") && err.contains("(unclosed"), "{err}");
    }
}
