//! An individual note must stand alone and must not name other members of the group.
//! This finds the first whole-word, case-insensitive occurrence of any of their names
//! (given, family, preferred, peer alias) in a text.

/// The character span `[start, end)` of the first name found, if any. Names shorter
/// than two letters are ignored (initials would match everywhere).
pub fn find_other_member_name(text: &str, names: &[String]) -> Option<(usize, usize)> {
    let lowered: Vec<char> = text.chars().flat_map(char::to_lowercase).collect();
    let mut best: Option<(usize, usize)> = None;
    for name in names {
        let needle: Vec<char> = name.trim().chars().flat_map(char::to_lowercase).collect();
        if needle.iter().filter(|c| c.is_alphanumeric()).count() < 2 {
            continue;
        }
        let mut start = 0;
        while start + needle.len() <= lowered.len() {
            let end = start + needle.len();
            let matches = lowered[start..end] == needle[..];
            let bounded_before = start == 0 || !lowered[start - 1].is_alphanumeric();
            let bounded_after = end == lowered.len() || !lowered[end].is_alphanumeric();
            if matches && bounded_before && bounded_after {
                if best.is_none_or(|(found, _)| start < found) {
                    best = Some((start, end));
                }
                break;
            }
            start += 1;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn finds_a_whole_word_name_whatever_the_case() {
        let text = "Client supported jordan during the check-in round.";
        assert_eq!(
            find_other_member_name(text, &names(&["Jordan", "Kim"])),
            Some((17, 23))
        );
    }

    #[test]
    fn does_not_match_inside_other_words() {
        let text = "Discussed kindness and skimming past triggers.";
        assert_eq!(find_other_member_name(text, &names(&["Kim", "Ness"])), None);
    }

    #[test]
    fn reports_the_earliest_name_in_characters() {
        let text = "Über-tired; talked with Sunny, then Riley.";
        assert_eq!(
            find_other_member_name(text, &names(&["Riley", "Sunny"])),
            Some((24, 29))
        );
    }

    #[test]
    fn ignores_initials_and_blank_names() {
        assert_eq!(
            find_other_member_name("A good session.", &names(&["A", " ", ""])),
            None
        );
    }
}
