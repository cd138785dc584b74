//! The accountability domain, pure and synchronous. Three aggregates: a journal per
//! participant (goals, check-ins, encouragement received, setbacks, milestones,
//! nudges, sessions attended), a partnership per pair, and settings per clinic (quiet
//! hours). What a command needs from elsewhere — is the encourager in the same group,
//! may they see the check-in, how wide may this participant share — is resolved
//! before the command is built. `evolve` also receives the commit's time.

pub mod instruments;
pub mod journal;
pub mod nudges;
pub mod partnership;
pub mod settings;
pub mod visibility;

pub use circle_calendar::Time;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cadence {
    Daily,
    Weekly,
    PerSession,
}

impl Cadence {
    /// How long a check-in may wait before it is missed (per-session goals follow
    /// attendance instead).
    pub fn period(self) -> Option<chrono::Duration> {
        match self {
            Self::Daily => Some(chrono::Duration::days(1)),
            Self::Weekly => Some(chrono::Duration::days(7)),
            Self::PerSession => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    OnTrack,
    Struggling,
    Setback,
}

/// Who may see a check-in, from widest to narrowest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Visibility {
    Group,
    Partner,
    Facilitators,
    Private,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NudgeLevel {
    Participant,
    Partner,
    Facilitator,
}

/// How a messaging service delivered a nudge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryChannel {
    Sms,
    Push,
    Email,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    GoalSet {
        goal_id: String,
        text: String,
        cadence: Cadence,
    },
    GoalRevised {
        goal_id: String,
        text: String,
        cadence: Cadence,
    },
    GoalCompleted {
        goal_id: String,
    },
    GoalAbandoned {
        goal_id: String,
    },
    CheckInSubmitted {
        check_in_id: String,
        goal_id: Option<String>,
        progress: Progress,
        mood: u32,
        craving: u32,
        text: String,
        visibility: Visibility,
        session_id: Option<String>,
    },
    EncouragementReceived {
        check_in_id: String,
        from_participant_id: String,
        reaction: String,
        message: String,
    },
    SetbackReported {
        setback_id: String,
        text: String,
        visibility: Visibility,
    },
    MilestoneReached {
        kind: String,
        value: u32,
    },
    NudgeSent {
        nudge_id: String,
        level: NudgeLevel,
        reason: String,
        goal_id: Option<String>,
        recipient_id: Option<String>,
        due_at: Time,
    },
    /// The nudge's recipient has seen it.
    NudgeAcknowledged {
        nudge_id: String,
    },
    /// A messaging service's receipt.
    NudgeDeliveryRecorded {
        nudge_id: String,
        delivered: bool,
        channel: DeliveryChannel,
    },
    /// How often the participant completes an instrument (0: no longer asked).
    MeasurementCadenceSet {
        instrument: String,
        every_days: u32,
    },
    /// A completed outcome measure as the service scored it; `answers` is the text
    /// `measurement_answers` writes, sealed in a stored journal.
    MeasurementRecorded {
        measurement_id: String,
        instrument: String,
        version: u32,
        answers: String,
        scores: Vec<instruments::ScaleScore>,
        safety: Vec<String>,
    },
    SessionAttended {
        session_id: String,
        attended: bool,
        excused: bool,
    },
    PartnershipProposed {
        group_id: String,
        proposer_id: String,
        invitee_id: String,
    },
    PartnershipAccepted,
    PartnershipEnded {
        reason: String,
    },
    QuietHoursSet {
        start_minute: u32,
        end_minute: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("a goal with this id already exists")]
    GoalExists,
    #[error("the goal does not exist")]
    GoalNotFound,
    #[error("the goal is no longer active")]
    GoalNotActive,
    #[error("the participant's peer-visibility consent does not allow sharing this widely")]
    ConsentRequired,
    #[error("the check-in does not exist")]
    CheckInNotFound,
    #[error("only members of the same active group who may see the check-in can encourage it")]
    CannotSeeCheckIn,
    #[error("participants encourage others, not their own check-ins")]
    OwnCheckIn,
    #[error("this member already encouraged that check-in")]
    AlreadyEncouraged,
    #[error("partners must both be active members of the group and have consented")]
    NotEligibleForPartnership,
    #[error("these two already have a partnership")]
    PartnershipExists,
    #[error("the partnership does not exist")]
    PartnershipNotFound,
    #[error("only the invited member can accept")]
    NotTheInvitee,
    #[error("the partnership is not awaiting acceptance")]
    NotProposed,
    #[error("a member cannot partner with themselves")]
    SelfPartnership,
    #[error("no such nudge was sent to the caller")]
    NudgeNotFound,
    #[error("the nudge was delivered already; a later failure cannot be recorded")]
    NudgeAlreadyDelivered,
}
