//! Who may see what. One function decides for every query, the feed and
//! encouragement, so the rules cannot drift apart.

use super::Visibility;

/// How a viewer relates to the author of a check-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer {
    /// The author.
    Author,
    /// Staff with access to the group (facilitators, admins).
    Staff,
    /// A member of a group the author is active in; `partner` if they are current
    /// accountability partners.
    Peer { partner: bool },
    /// Anyone else.
    Stranger,
}

/// What the author currently allows peers to see (their peer-visibility consent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Consent {
    pub share_check_ins: bool,
    pub share_milestones: bool,
}

/// The widest visibility a participant may choose: group or partner sharing needs
/// their consent to share check-ins.
pub fn widest_allowed(consent: Consent) -> Visibility {
    if consent.share_check_ins {
        Visibility::Group
    } else {
        Visibility::Facilitators
    }
}

/// May `viewer` see a check-in with `visibility`, under the author's consent as it is
/// now? Revoking consent hides earlier check-ins from peers from then on.
pub fn can_see_check_in(viewer: Viewer, visibility: Visibility, consent: Consent) -> bool {
    match viewer {
        Viewer::Author => true,
        Viewer::Staff => visibility != Visibility::Private,
        Viewer::Peer { partner } => {
            consent.share_check_ins
                && (visibility == Visibility::Group
                    || (partner && visibility == Visibility::Partner))
        }
        Viewer::Stranger => false,
    }
}

pub fn can_see_milestones(viewer: Viewer, consent: Consent) -> bool {
    match viewer {
        Viewer::Author | Viewer::Staff => true,
        Viewer::Peer { .. } => consent.share_milestones,
        Viewer::Stranger => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHARING: Consent = Consent {
        share_check_ins: true,
        share_milestones: true,
    };
    const NOTHING: Consent = Consent {
        share_check_ins: false,
        share_milestones: false,
    };

    #[test]
    fn a_private_check_in_reaches_only_its_author() {
        assert!(can_see_check_in(
            Viewer::Author,
            Visibility::Private,
            SHARING
        ));
        for viewer in [
            Viewer::Staff,
            Viewer::Peer { partner: true },
            Viewer::Peer { partner: false },
            Viewer::Stranger,
        ] {
            assert!(
                !can_see_check_in(viewer, Visibility::Private, SHARING),
                "{viewer:?}"
            );
        }
    }

    #[test]
    fn partner_check_ins_reach_the_partner_and_staff_but_not_the_group() {
        assert!(can_see_check_in(
            Viewer::Peer { partner: true },
            Visibility::Partner,
            SHARING
        ));
        assert!(!can_see_check_in(
            Viewer::Peer { partner: false },
            Visibility::Partner,
            SHARING
        ));
        assert!(can_see_check_in(
            Viewer::Staff,
            Visibility::Partner,
            SHARING
        ));
    }

    #[test]
    fn without_consent_peers_see_nothing_even_of_group_check_ins() {
        assert!(!can_see_check_in(
            Viewer::Peer { partner: true },
            Visibility::Group,
            NOTHING
        ));
        assert!(can_see_check_in(Viewer::Staff, Visibility::Group, NOTHING));
        assert!(!can_see_milestones(
            Viewer::Peer { partner: false },
            NOTHING
        ));
        assert_eq!(widest_allowed(NOTHING), Visibility::Facilitators);
        assert_eq!(widest_allowed(SHARING), Visibility::Group);
    }
}
