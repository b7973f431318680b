//! The keyword rules and the gate's request words as matchers: a text is read once, whatever the
//! number of words (Aho–Corasick for "contains", a map for "exact"). ASCII letters compare
//! case-insensitively; the words are stored trimmed and ASCII-lowercased by the rules' reader.

use std::collections::HashMap;

use aho_corasick::automaton::Automaton;
use aho_corasick::nfa::contiguous::NFA;
use aho_corasick::{Input, MatchKind};

/// One keyword rule. Words are kept with ASCII letters lowercased (they match case-insensitively).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyword {
    /// `exact`: the trimmed text equals a word; else it contains one.
    pub exact: bool,
    pub words: Vec<String>,
    pub reply: String,
}

/// A set of words found anywhere in a text.
#[derive(Debug, Clone, Default)]
pub struct WordSet {
    words: Vec<String>,
    automaton: Option<NFA>,
}

/// Why words cannot be matched (an automaton over the limits of its state identifiers; the
/// document's size bounds them far below).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyWords;

/// The automaton of `patterns` (a contiguous NFA: compact, whatever their number), or none for
/// no pattern.
fn automaton<I, P>(patterns: I) -> Result<Option<NFA>, TooManyWords>
where
    I: IntoIterator<Item = P>,
    P: AsRef<[u8]>,
{
    let mut patterns = patterns.into_iter().peekable();
    if patterns.peek().is_none() {
        return Ok(None);
    }
    NFA::builder()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::Standard)
        .prefilter(false)
        .build(patterns)
        .map(Some)
        .map_err(|_| TooManyWords)
}

impl WordSet {
    pub fn new(words: &[String]) -> Result<WordSet, TooManyWords> {
        Ok(WordSet { words: words.to_vec(), automaton: automaton(words)? })
    }

    /// Whether `text` contains one of the words.
    pub fn found_in(&self, text: &str) -> bool {
        self.automaton
            .as_ref()
            .and_then(|a| a.try_find_overlapping_iter(Input::new(text)).ok())
            .is_some_and(|mut found| found.next().is_some())
    }
}

impl PartialEq for WordSet {
    /// The same words (the automaton is built from them).
    fn eq(&self, other: &Self) -> bool {
        self.words == other.words
    }
}

impl Eq for WordSet {}

/// The keyword rules, compiled.
#[derive(Debug, Clone, Default)]
pub struct KeywordMatcher {
    /// Exact words: the first rule (by order) that lists each.
    exact: HashMap<String, usize>,
    /// "contains" words, and the rule each belongs to, by pattern.
    contains: Vec<(String, usize)>,
    automaton: Option<NFA>,
}

impl KeywordMatcher {
    pub fn new(keywords: &[Keyword]) -> Result<KeywordMatcher, TooManyWords> {
        let mut exact = HashMap::new();
        let mut contains = Vec::new();
        for (i, k) in keywords.iter().enumerate() {
            for word in &k.words {
                if k.exact {
                    exact.entry(word.clone()).or_insert(i);
                } else {
                    contains.push((word.clone(), i));
                }
            }
        }
        let automaton = automaton(contains.iter().map(|(w, _)| w.as_bytes()))?;
        Ok(KeywordMatcher { exact, contains, automaton })
    }

    /// The first rule, in the document's order, that `text` matches: its trimmed text equals an
    /// exact word, or it contains a "contains" word.
    pub fn first(&self, text: &str) -> Option<usize> {
        let exact =
            if self.exact.is_empty() { None } else { self.exact.get(&text.trim().to_ascii_lowercase()).copied() };
        let contains = self.automaton.as_ref().and_then(|a| {
            a.try_find_overlapping_iter(Input::new(text))
                .ok()?
                .filter_map(|m| self.contains.get(m.pattern().as_usize()).map(|(_, rule)| *rule))
                .min()
        });
        match (exact, contains) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl PartialEq for KeywordMatcher {
    /// Built from the same words (the automaton follows from them).
    fn eq(&self, other: &Self) -> bool {
        self.exact == other.exact && self.contains == other.contains
    }
}

impl Eq for KeywordMatcher {}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(exact: bool, words: &[&str], reply: &str) -> Keyword {
        Keyword { exact, words: words.iter().map(|w| w.to_string()).collect(), reply: reply.to_string() }
    }

    #[test]
    fn the_first_rule_in_the_documents_order_wins() {
        let m = KeywordMatcher::new(&[
            rule(false, &["发票", "invoice"], "A"),
            rule(true, &["营业时间", "hours"], "B"),
            rule(false, &["时间"], "C"),
        ])
        .unwrap();
        for (text, first) in [
            ("我要开发票", Some(0)),
            ("  HOURS ", Some(1)),
            ("营业时间", Some(1)),
            ("营业时间?", Some(2)),
            ("Need an INVOICE please", Some(0)),
            ("营业时间和发票", Some(0)),
            ("hours please", None),
            ("", None),
            ("你好", None),
        ] {
            assert_eq!(m.first(text), first, "{text:?}");
        }
    }

    #[test]
    fn words_inside_other_words_and_overlapping_ones_are_all_found() {
        let m = KeywordMatcher::new(&[rule(false, &["abcd"], "late"), rule(false, &["bc"], "early")]).unwrap();
        assert_eq!(m.first("xabcdx"), Some(0), "the earlier rule, though its word ends later");
        let set = WordSet::new(&["人工".to_string(), "agent".to_string()]).unwrap();
        assert!(set.found_in("转人工") && set.found_in("an AGENT") && !set.found_in("工人"));
        assert!(!WordSet::default().found_in("人工"));
    }
}
