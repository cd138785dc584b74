//! Outcome measures (measurement-based care): standard instruments defined as data —
//! `instruments/*.toml`, one file each, every one embedded by `build.rs`: items, their
//! answer options, the scales that sum them, each scale's severity bands, and safety
//! rules (an item answered at or above a value is a concern whatever the scores). A
//! new instrument is a new file, no code. A client answers by choosing an option (its
//! place in the item's option set); what the option is worth, and every score, is the
//! definition's, never the client's.
//!
//! [`Catalog::standard`] holds PHQ-9, GAD-7 and the Brief Addiction Monitor, checked
//! when loaded: every scale's bands cover the range from the lowest to the highest sum
//! of its items, one band per score, in order; ids are unique; every item, option set
//! and safety rule refers to something that exists; option values are bounded (no sum
//! overflows); a safety rule can be met and can be missed.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

/// The instruments' files, embedded: every `instruments/*.toml` (`build.rs`), by name.
mod standard {
    include!(concat!(env!("OUT_DIR"), "/instruments.rs"));
}
pub use standard::STANDARD;

/// Answers a submission may hold at most (items of any instrument).
pub const MAX_ITEMS: usize = 64;
/// An option set's options at most, and the largest value an option may carry (so no
/// sum of a scale can overflow).
pub const MAX_OPTIONS: usize = 32;
pub const MAX_OPTION_VALUE: u32 = 1_000;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instrument {
    pub id: String,
    pub name: String,
    pub version: u32,
    /// The period the answers describe (e.g. 14 days for PHQ-9).
    pub recall_days: u32,
    pub items: Vec<Item>,
    pub option_sets: Vec<OptionSet>,
    pub scales: Vec<Scale>,
    #[serde(default)]
    pub safety: Vec<SafetyRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    pub id: String,
    /// What the item asks about, in a few words (a client shows the published wording).
    pub topic: String,
    /// The id of its option set.
    pub options: String,
    /// Whether a submission must answer it (BAM's 7a–7g are asked only sometimes).
    #[serde(default = "yes")]
    pub required: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptionSet {
    pub id: String,
    pub options: Vec<AnswerOption>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerOption {
    pub value: u32,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    pub id: String,
    pub name: String,
    /// The items it sums.
    pub items: Vec<String>,
    /// Whether a higher score is worse (a protective scale's is better).
    pub higher_is_worse: bool,
    pub bands: Vec<Band>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Band {
    pub min: u32,
    pub max: u32,
    pub label: String,
    /// Of clinical concern (a facilitator's attention).
    #[serde(default)]
    pub significant: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafetyRule {
    pub id: String,
    pub item: String,
    pub at_least: u32,
}

/// An instrument file that does not hold together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("instrument {file}: {problem}")]
pub struct DefinitionError {
    pub file: String,
    pub problem: String,
}

/// Why answers cannot be scored: each is the caller's to fix, never a retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScoringError {
    #[error("there is no instrument {0:?}")]
    UnknownInstrument(String),
    #[error("item {0:?} is not an item of the instrument")]
    UnknownItem(String),
    #[error("item {0:?} is answered more than once")]
    DuplicateAnswer(String),
    #[error("item {0:?} is not answered")]
    MissingAnswer(String),
    #[error("item {item:?} has no option {option} (its options are numbered from 0)")]
    InvalidAnswer { item: String, option: u32 },
    #[error("at most {MAX_ITEMS} answers")]
    TooManyAnswers,
}

/// One scale's score and the band it falls in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleScore {
    pub scale: String,
    pub score: u32,
    pub band: String,
    pub significant: bool,
}

/// What answers come to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scored {
    pub instrument: String,
    pub version: u32,
    pub scales: Vec<ScaleScore>,
    /// The safety rules the answers meet (ids), e.g. PHQ-9's item 9 above 0.
    pub safety: Vec<String>,
}

impl Scored {
    pub fn scale(&self, id: &str) -> Option<&ScaleScore> {
        self.scales.iter().find(|scale| scale.scale == id)
    }
}

impl Instrument {
    fn option_set(&self, id: &str) -> Option<&OptionSet> {
        self.option_sets.iter().find(|set| set.id == id)
    }

    fn item(&self, id: &str) -> Option<&Item> {
        self.items.iter().find(|item| item.id == id)
    }

    /// The highest answer an item can have.
    fn most(&self, item: &Item) -> u32 {
        self.option_set(&item.options)
            .and_then(|set| set.options.iter().map(|option| option.value).max())
            .unwrap_or(0)
    }

    fn least(&self, item: &Item) -> u32 {
        self.option_set(&item.options)
            .and_then(|set| set.options.iter().map(|option| option.value).min())
            .unwrap_or(0)
    }

    /// Checks the definition holds together.
    fn check(&self, file: &str) -> Result<(), DefinitionError> {
        let fail = |problem: String| {
            Err(DefinitionError {
                file: file.to_owned(),
                problem,
            })
        };
        let unique = |ids: Vec<&str>| ids.iter().collect::<BTreeSet<_>>().len() == ids.len();
        if !unique(self.items.iter().map(|item| item.id.as_str()).collect()) {
            return fail("two items share an id".into());
        }
        if !unique(self.option_sets.iter().map(|set| set.id.as_str()).collect()) {
            return fail("two option sets share an id".into());
        }
        if !unique(self.scales.iter().map(|scale| scale.id.as_str()).collect()) {
            return fail("two scales share an id".into());
        }
        if !unique(self.safety.iter().map(|rule| rule.id.as_str()).collect()) {
            return fail("two safety rules share an id".into());
        }
        if self.items.is_empty() || self.items.len() > MAX_ITEMS {
            return fail(format!("it needs 1 to {MAX_ITEMS} items"));
        }
        for set in &self.option_sets {
            let values: BTreeSet<u32> = set.options.iter().map(|option| option.value).collect();
            if set.options.is_empty()
                || set.options.len() > MAX_OPTIONS
                || values.len() != set.options.len()
                || values.iter().any(|value| *value > MAX_OPTION_VALUE)
            {
                return fail(format!(
                    "option set {:?} needs 1 to {MAX_OPTIONS} options of distinct values \
                     up to {MAX_OPTION_VALUE}",
                    set.id
                ));
            }
        }
        for item in &self.items {
            if self.option_set(&item.options).is_none() {
                return fail(format!(
                    "item {:?} names no option set of the instrument",
                    item.id
                ));
            }
        }
        for scale in &self.scales {
            if !unique(scale.items.iter().map(String::as_str).collect()) {
                return fail(format!("scale {:?} sums an item twice", scale.id));
            }
            // At most 64 items of values up to 1,000: no sum overflows.
            let mut least = 0;
            let mut most = 0;
            for id in &scale.items {
                let Some(item) = self.item(id) else {
                    return fail(format!("scale {:?} sums an unknown item {id:?}", scale.id));
                };
                if !item.required {
                    return fail(format!(
                        "scale {:?} sums item {id:?}, which may go unanswered",
                        scale.id
                    ));
                }
                least += self.least(item);
                most += self.most(item);
            }
            // The bands, in order, cover least..=most once each.
            let mut next = least;
            for band in &scale.bands {
                if band.min != next || band.max < band.min || band.max > most {
                    return fail(format!(
                        "scale {:?}: its bands must cover {least} to {most} in order, \
                         without gaps or overlaps (a band starts at {})",
                        scale.id, band.min
                    ));
                }
                next = band.max + 1;
            }
            if next != most + 1 {
                return fail(format!(
                    "scale {:?}: its bands end at {}, its items sum to at most {most}",
                    scale.id,
                    next.saturating_sub(1)
                ));
            }
        }
        for rule in &self.safety {
            let Some(item) = self.item(&rule.item) else {
                return fail(format!("safety rule {:?} names an unknown item", rule.id));
            };
            if rule.at_least > self.most(item) || rule.at_least <= self.least(item) {
                return fail(format!(
                    "safety rule {:?} is never or always met: item {:?} goes from {} to {}",
                    rule.id,
                    item.id,
                    self.least(item),
                    self.most(item)
                ));
            }
        }
        Ok(())
    }

    /// Scores answers (item id, the chosen option's place in the item's option set,
    /// from 0): every required item answered once; each option's value is the
    /// definition's, never the client's; each scale summed and banded; the safety
    /// rules met.
    pub fn score(&self, answers: &[(String, u32)]) -> Result<Scored, ScoringError> {
        if answers.len() > MAX_ITEMS {
            return Err(ScoringError::TooManyAnswers);
        }
        let mut given: BTreeMap<&str, u32> = BTreeMap::new();
        for (id, option) in answers {
            let Some(item) = self.item(id) else {
                return Err(ScoringError::UnknownItem(id.clone()));
            };
            let Some(value) = self
                .option_set(&item.options)
                .and_then(|set| set.options.get(*option as usize))
                .map(|chosen| chosen.value)
            else {
                return Err(ScoringError::InvalidAnswer {
                    item: id.clone(),
                    option: *option,
                });
            };
            if given.insert(id.as_str(), value).is_some() {
                return Err(ScoringError::DuplicateAnswer(id.clone()));
            }
        }
        if let Some(missing) = self
            .items
            .iter()
            .find(|item| item.required && !given.contains_key(item.id.as_str()))
        {
            return Err(ScoringError::MissingAnswer(missing.id.clone()));
        }
        let scales = self
            .scales
            .iter()
            .map(|scale| {
                let score: u32 = scale
                    .items
                    .iter()
                    .map(|id| given.get(id.as_str()).copied().unwrap_or(0))
                    .sum();
                // The bands cover every score the items can sum to (checked on load).
                let band = scale
                    .bands
                    .iter()
                    .find(|band| (band.min..=band.max).contains(&score));
                ScaleScore {
                    scale: scale.id.clone(),
                    score,
                    band: band.map(|band| band.label.clone()).unwrap_or_default(),
                    significant: band.is_some_and(|band| band.significant),
                }
            })
            .collect();
        let safety = self
            .safety
            .iter()
            .filter(|rule| {
                given
                    .get(rule.item.as_str())
                    .is_some_and(|value| *value >= rule.at_least)
            })
            .map(|rule| rule.id.clone())
            .collect();
        Ok(Scored {
            instrument: self.id.clone(),
            version: self.version,
            scales,
            safety,
        })
    }
}

/// The instruments a service offers, by id.
#[derive(Debug, Clone)]
pub struct Catalog {
    instruments: BTreeMap<String, Instrument>,
}

impl Catalog {
    /// Parses and checks instrument files: (file name, TOML text).
    pub fn parse(files: &[(&str, &str)]) -> Result<Self, DefinitionError> {
        let mut instruments = BTreeMap::new();
        for (file, text) in files {
            let instrument: Instrument = toml::from_str(text).map_err(|error| DefinitionError {
                file: (*file).to_owned(),
                problem: error.to_string(),
            })?;
            instrument.check(file)?;
            if instruments.contains_key(&instrument.id) {
                return Err(DefinitionError {
                    file: (*file).to_owned(),
                    problem: format!("a second instrument {:?}", instrument.id),
                });
            }
            instruments.insert(instrument.id.clone(), instrument);
        }
        Ok(Self { instruments })
    }

    /// PHQ-9, GAD-7 and the Brief Addiction Monitor.
    pub fn standard() -> Result<Self, DefinitionError> {
        Self::parse(&STANDARD)
    }

    pub fn get(&self, id: &str) -> Option<&Instrument> {
        self.instruments.get(id)
    }

    pub fn instruments(&self) -> impl Iterator<Item = &Instrument> {
        self.instruments.values()
    }

    /// The standard catalog, parsed once per process (the definitions are embedded:
    /// a unit test holds them valid).
    pub fn shared() -> Result<&'static Catalog, DefinitionError> {
        static SHARED: std::sync::LazyLock<Result<Catalog, DefinitionError>> =
            std::sync::LazyLock::new(Catalog::standard);
        SHARED.as_ref().map_err(Clone::clone)
    }

    /// Scores answers to instrument `id`.
    pub fn score(&self, id: &str, answers: &[(String, u32)]) -> Result<Scored, ScoringError> {
        self.get(id)
            .ok_or_else(|| ScoringError::UnknownInstrument(id.to_owned()))?
            .score(answers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::standard().expect("the standard instruments hold together")
    }

    /// The text of an embedded instrument file.
    fn file(name: &str) -> &'static str {
        STANDARD
            .iter()
            .find(|(file, _)| *file == name)
            .map(|(_, text)| *text)
            .expect("an embedded instrument file")
    }

    #[test]
    fn every_file_in_the_instruments_folder_is_offered() {
        let catalog = catalog();
        let offered: Vec<&str> = catalog.instruments().map(|one| one.id.as_str()).collect();
        assert_eq!(offered, vec!["bam", "gad-7", "phq-9"]);
        assert_eq!(STANDARD.len(), 3);
    }

    /// Answers to every required item of `instrument`, each `value` (or the nearest
    /// option below it), then `overrides`.
    fn answers(instrument: &str, fill: u32, overrides: &[(&str, u32)]) -> Vec<(String, u32)> {
        let catalog = catalog();
        let instrument = catalog.get(instrument).expect("instrument");
        let mut answers: Vec<(String, u32)> = instrument
            .items
            .iter()
            .filter(|item| item.required)
            .filter(|item| !overrides.iter().any(|(id, _)| *id == item.id))
            .map(|item| {
                let set = instrument.option_set(&item.options).expect("set");
                let value = set
                    .options
                    .iter()
                    .map(|option| option.value)
                    .filter(|value| *value <= fill)
                    .max()
                    .unwrap_or(0);
                (item.id.clone(), value)
            })
            .collect();
        answers.extend(
            overrides
                .iter()
                .map(|(id, value)| ((*id).to_owned(), *value)),
        );
        answers
    }

    /// Answers by value (the published scores) as the service takes them: each value's
    /// option, by its place in the item's option set (`u32::MAX` where none has it).
    fn by_value(instrument: &str, answers: &[(String, u32)]) -> Vec<(String, u32)> {
        let catalog = catalog();
        let Some(instrument) = catalog.get(instrument) else {
            return answers.to_vec();
        };
        answers
            .iter()
            .map(|(id, value)| {
                let option = instrument
                    .item(id)
                    .and_then(|item| instrument.option_set(&item.options))
                    .and_then(|set| set.options.iter().position(|option| option.value == *value))
                    .map_or(u32::MAX, |at| at as u32);
                (id.clone(), option)
            })
            .collect()
    }

    /// Scores answers given by value.
    fn scored(instrument: &str, answers: &[(String, u32)]) -> Result<Scored, ScoringError> {
        catalog().score(instrument, &by_value(instrument, answers))
    }

    /// Answers to items "1".."items" of 0–3 summing to `total` (filled from the first
    /// item on), with item `keep_zero` left at 0.
    fn summing_to(items: usize, total: u32, keep_zero: Option<&str>) -> Vec<(String, u32)> {
        let mut left = total;
        let answers: Vec<(String, u32)> = (1..=items)
            .map(|n| {
                let id = n.to_string();
                let value = if keep_zero == Some(id.as_str()) {
                    0
                } else {
                    let value = left.min(3);
                    left -= value;
                    value
                };
                (id, value)
            })
            .collect();
        assert_eq!(left, 0, "{total} does not fit in {items} items");
        answers
    }

    fn band(instrument: &str, scale: &str, answers: &[(String, u32)]) -> (u32, String, bool) {
        let scored = scored(instrument, answers).expect("scores");
        let scale = scored.scale(scale).expect("scale").clone();
        (scale.score, scale.band, scale.significant)
    }

    #[test]
    fn phq9_bands_at_every_boundary() {
        for (total, expected, significant) in [
            (0, "minimal", false),
            (4, "minimal", false),
            (5, "mild", false),
            (9, "mild", false),
            (10, "moderate", true),
            (14, "moderate", true),
            (15, "moderately severe", true),
            (19, "moderately severe", true),
            (20, "severe", true),
            (24, "severe", true),
        ] {
            // Item 9 kept at 0: the bands alone (24 is the most the other eight reach).
            let answers = summing_to(9, total, Some("9"));
            assert_eq!(
                band("phq-9", "total", &answers),
                (total, expected.to_owned(), significant),
                "PHQ-9 total {total}"
            );
            let scored = scored("phq-9", &answers).expect("scores");
            assert!(scored.safety.is_empty(), "item 9 at 0 raises nothing");
        }
        let all = answers("phq-9", 3, &[]);
        assert_eq!(
            band("phq-9", "total", &all),
            (27, "severe".to_owned(), true)
        );
    }

    #[test]
    fn phq9_item_9_above_zero_is_a_safety_concern_whatever_the_total() {
        for value in 1..=3 {
            let scored = scored("phq-9", &answers("phq-9", 0, &[("9", value)])).expect("scores");
            assert_eq!(
                scored.safety,
                vec!["self-harm".to_owned()],
                "item 9 = {value}"
            );
            assert_eq!(
                scored.scale("total").map(|scale| scale.band.as_str()),
                Some("minimal")
            );
        }
        let scored = scored("phq-9", &answers("phq-9", 3, &[("9", 0)])).expect("scores");
        assert!(scored.safety.is_empty());
    }

    #[test]
    fn gad7_bands_at_every_boundary() {
        for (total, expected, significant) in [
            (0, "minimal", false),
            (4, "minimal", false),
            (5, "mild", false),
            (9, "mild", false),
            (10, "moderate", true),
            (14, "moderate", true),
            (15, "severe", true),
            (21, "severe", true),
        ] {
            let answers = summing_to(7, total, None);
            assert_eq!(
                band("gad-7", "total", &answers),
                (total, expected.to_owned(), significant),
                "GAD-7 total {total}"
            );
        }
    }

    #[test]
    fn bam_subscales_sum_their_items_and_band_at_the_published_cut_offs() {
        // Use: items 4, 5, 6; any use is of concern.
        assert_eq!(
            band("bam", "use", &answers("bam", 0, &[])),
            (0, "no use".to_owned(), false)
        );
        assert_eq!(
            band("bam", "use", &answers("bam", 0, &[("5", 1)])),
            (1, "any use".to_owned(), true)
        );
        assert_eq!(
            band(
                "bam",
                "use",
                &answers("bam", 0, &[("4", 4), ("5", 4), ("6", 4)])
            ),
            (12, "any use".to_owned(), true)
        );
        // Risk: items 1, 2, 3, 8, 11, 15; 12 or more is of concern.
        let risk = |values: [u32; 6]| {
            let overrides: Vec<(&str, u32)> = ["1", "2", "3", "8", "11", "15"]
                .into_iter()
                .zip(values)
                .collect();
            band("bam", "risk", &answers("bam", 0, &overrides))
        };
        assert_eq!(
            risk([4, 4, 3, 0, 0, 0]),
            (11, "lower risk".to_owned(), false)
        );
        assert_eq!(
            risk([4, 4, 4, 0, 0, 0]),
            (12, "elevated risk".to_owned(), true)
        );
        assert_eq!(risk([0; 6]), (0, "lower risk".to_owned(), false));
        assert_eq!(risk([4; 6]), (24, "elevated risk".to_owned(), true));
        // Protective: items 9, 10, 12, 13, 14, 16; 12 or less is of concern (14 is
        // answered no = 0 or yes = 4).
        let protective = |values: [u32; 6]| {
            let overrides: Vec<(&str, u32)> = ["9", "10", "12", "13", "14", "16"]
                .into_iter()
                .zip(values)
                .collect();
            band("bam", "protective", &answers("bam", 0, &overrides))
        };
        assert_eq!(protective([0; 6]), (0, "low protection".to_owned(), true));
        assert_eq!(
            protective([4, 4, 4, 0, 0, 0]),
            (12, "low protection".to_owned(), true)
        );
        assert_eq!(
            protective([4, 4, 1, 0, 4, 0]),
            (13, "adequate protection".to_owned(), false)
        );
        assert_eq!(
            protective([4; 6]),
            (24, "adequate protection".to_owned(), false)
        );
        // Items outside the subscales move none of them.
        let base = scored("bam", &answers("bam", 0, &[])).expect("scores");
        let more = scored("bam", &answers("bam", 0, &[("17", 4), ("7a", 4)])).expect("scores");
        assert_eq!(base.scales, more.scales);
    }

    #[test]
    fn answers_that_cannot_be_scored_are_refused_and_say_why() {
        let catalog = catalog();
        let mut missing = answers("phq-9", 1, &[]);
        missing.retain(|(id, _)| id != "4");
        assert_eq!(
            scored("phq-9", &missing),
            Err(ScoringError::MissingAnswer("4".into()))
        );
        // Options are chosen by their place: PHQ-9's are 0–3, so 4 is none.
        let mut beyond = by_value("phq-9", &answers("phq-9", 1, &[]));
        beyond.retain(|(id, _)| id != "2");
        beyond.push(("2".into(), 4));
        assert_eq!(
            catalog.score("phq-9", &beyond),
            Err(ScoringError::InvalidAnswer {
                item: "2".into(),
                option: 4
            })
        );
        // BAM's item 14 has two options, no (worth 0) and yes (worth 4): the second is
        // chosen as 1 and scores 4; 2 is none.
        let mut yes = by_value("bam", &answers("bam", 0, &[]));
        yes.retain(|(id, _)| id != "14");
        yes.push(("14".into(), 1));
        let protective = catalog.score("bam", &yes).expect("scores");
        assert_eq!(
            protective.scale("protective").map(|scale| scale.score),
            Some(4)
        );
        let mut none = yes.clone();
        none.retain(|(id, _)| id != "14");
        none.push(("14".into(), 2));
        assert_eq!(
            catalog.score("bam", &none),
            Err(ScoringError::InvalidAnswer {
                item: "14".into(),
                option: 2
            })
        );
        let mut twice = answers("gad-7", 1, &[]);
        twice.push(("3".into(), 2));
        assert_eq!(
            scored("gad-7", &twice),
            Err(ScoringError::DuplicateAnswer("3".into()))
        );
        assert_eq!(
            scored("gad-7", &answers("gad-7", 1, &[("8", 1)])),
            Err(ScoringError::UnknownItem("8".into()))
        );
        assert_eq!(
            scored("phq-10", &[]),
            Err(ScoringError::UnknownInstrument("phq-10".into()))
        );
        let many: Vec<(String, u32)> = (0..=MAX_ITEMS).map(|n| (n.to_string(), 0)).collect();
        assert_eq!(scored("bam", &many), Err(ScoringError::TooManyAnswers));
        // BAM's 7a–7g may go unanswered.
        assert!(scored("bam", &answers("bam", 2, &[])).is_ok());
    }

    #[test]
    fn an_instrument_whose_bands_do_not_cover_its_scores_is_refused() {
        let gad7 = file("gad7.toml");
        let gap = gad7.replace(
            "{ min = 5, max = 9, label = \"mild\" }",
            "{ min = 6, max = 9, label = \"mild\" }",
        );
        let error = Catalog::parse(&[("gad7.toml", &gap)]).expect_err("a gap");
        assert!(error.problem.contains("without gaps"), "{error}");
        let short = gad7.replace("{ min = 15, max = 21,", "{ min = 15, max = 20,");
        let error = Catalog::parse(&[("gad7.toml", &short)]).expect_err("too short");
        assert!(error.problem.contains("at most 21"), "{error}");
        let unknown = gad7.replace("items = [\"1\", \"2\"", "items = [\"0\", \"2\"");
        let error = Catalog::parse(&[("gad7.toml", &unknown)]).expect_err("an unknown item");
        assert!(error.problem.contains("unknown item \"0\""), "{error}");
        let repeated = gad7.replace("items = [\"1\", \"2\"", "items = [\"1\", \"1\"");
        let error = Catalog::parse(&[("gad7.toml", &repeated)]).expect_err("an item twice");
        assert!(error.problem.contains("sums an item twice"), "{error}");
        let huge = gad7.replace("{ value = 3, label", "{ value = 4000000000, label");
        let error = Catalog::parse(&[("gad7.toml", &huge)]).expect_err("a huge value");
        assert!(error.problem.contains("up to 1000"), "{error}");
        let twice = Catalog::parse(&[("a.toml", gad7), ("b.toml", gad7)]).expect_err("twice");
        assert!(twice.problem.contains("second instrument"), "{twice}");
        for at_least in ["at_least = 4", "at_least = 0"] {
            let phq9 = file("phq9.toml").replace("at_least = 1", at_least);
            let error = Catalog::parse(&[("phq9.toml", &phq9)]).expect_err(at_least);
            assert!(error.problem.contains("never or always met"), "{error}");
        }
    }
}
