//! The group aggregate: the consistency boundary for seats. Every membership change
//! of a group is decided here against the whole group, so capacity holds under any
//! concurrency: seats taken = active + on hold + open offers ≤ capacity.
//!
//! A seat that frees (discharge, transfer out, declined or expired offer, capacity
//! raised) is offered to the head of the waitlist in the same commit that freed it, so
//! there is never a moment with a free seat and people waiting.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::schedule::time_zone;
use super::{
    AdmissionMode, AdmissionPath, DischargeReason, DomainError, Event, Facilitator, GroupDetails,
    Schedule, Time, TransferRef,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    Active,
    OnHold,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub participant_id: String,
    pub transfer: Option<TransferRef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub offer_id: String,
    pub expires_at: Time,
    pub transfer: Option<TransferRef>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    pub details: Option<GroupDetails>,
    pub archived: bool,
    pub members: BTreeMap<String, MemberState>,
    /// In arrival order.
    pub waitlist: VecDeque<Waiting>,
    /// Open offers by participant; each holds a seat.
    pub offers: BTreeMap<String, Offer>,
    pub offers_made: u64,
    /// Whose last offer expired unanswered (so a late acceptance is told why).
    pub expired_offers: BTreeSet<String>,
}

impl Group {
    pub fn capacity(&self) -> u32 {
        self.details.as_ref().map_or(0, |details| details.capacity)
    }

    /// Seats taken: active and on-hold members, and seats held by open offers.
    pub fn occupied(&self) -> u32 {
        (self.members.len() + self.offers.len()) as u32
    }

    pub fn free_seats(&self) -> u32 {
        self.capacity().saturating_sub(self.occupied())
    }

    pub fn waitlist_position(&self, participant_id: &str) -> Option<u32> {
        self.waitlist
            .iter()
            .position(|waiting| waiting.participant_id == participant_id)
            .map(|index| index as u32 + 1)
    }

    /// Before the first session a closed group admits anyone; after it, only with a
    /// facilitator's override. A group without a schedule has not started.
    fn has_started(&self, now: Time) -> bool {
        self.details.as_ref().is_some_and(|details| {
            details
                .schedule
                .as_ref()
                .and_then(|schedule| schedule.first_session(time_zone(&details.time_zone)))
                .is_some_and(|first| first <= now)
        })
    }

    fn is_closed_to_newcomers(&self, now: Time) -> bool {
        self.details
            .as_ref()
            .is_some_and(|details| details.admission_mode == AdmissionMode::Closed)
            && self.has_started(now)
    }
}

/// Facts a command needs that are not in the group: the time, and how long a seat
/// offer stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupContext {
    pub now: Time,
    pub offer_ttl: chrono::Duration,
}

/// Fields to change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupChanges {
    pub display_name: Option<String>,
    pub modality: Option<String>,
    pub level_of_care: Option<String>,
    pub capacity: Option<u32>,
    pub admission_mode: Option<AdmissionMode>,
    pub facilitators: Option<Vec<Facilitator>>,
    /// `Some(None)` removes the schedule.
    pub schedule: Option<Option<Schedule>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupCommand {
    Create(GroupDetails),
    Update(GroupChanges),
    Archive,
    /// The participant is known to exist.
    Enroll {
        participant_id: String,
        facilitator_override: bool,
    },
    /// The first half of a transfer, on the new group: take a seat or a waitlist place.
    TransferIn {
        participant_id: String,
        transfer: TransferRef,
        facilitator_override: bool,
    },
    /// The second half, on the old group, once the new seat is taken. A no-op when the
    /// participant is no longer a member.
    ReleaseForTransfer {
        participant_id: String,
        transfer: TransferRef,
    },
    AcceptOffer {
        participant_id: String,
    },
    DeclineOffer {
        participant_id: String,
    },
    /// A no-op unless the offer is open and due.
    ExpireOffer {
        offer_id: String,
    },
    Hold {
        participant_id: String,
        reason: String,
    },
    Resume {
        participant_id: String,
    },
    Discharge {
        participant_id: String,
        reason: DischargeReason,
    },
}

pub fn decide(
    state: &Group,
    command: GroupCommand,
    context: GroupContext,
) -> Result<Vec<Event>, DomainError> {
    if let GroupCommand::Create(details) = command {
        if state.details.is_some() {
            return Err(DomainError::GroupExists);
        }
        return Ok(vec![Event::GroupCreated(details)]);
    }
    let Some(details) = &state.details else {
        return Err(DomainError::GroupNotFound);
    };
    let events = match command {
        GroupCommand::Create(_) => return Err(DomainError::GroupExists),
        GroupCommand::Archive => {
            if state.archived {
                return Ok(Vec::new());
            }
            if !state.members.is_empty() || !state.offers.is_empty() || !state.waitlist.is_empty() {
                return Err(DomainError::GroupHasMembers);
            }
            vec![Event::GroupArchived]
        }
        _ if state.archived => return Err(DomainError::GroupArchived),
        GroupCommand::Update(changes) => update(state, details, changes)?,
        GroupCommand::Enroll {
            participant_id,
            facilitator_override,
        } => join(state, participant_id, None, facilitator_override, context)?,
        GroupCommand::TransferIn {
            participant_id,
            transfer,
            facilitator_override,
        } => join(
            state,
            participant_id,
            Some(transfer),
            facilitator_override,
            context,
        )?,
        GroupCommand::ReleaseForTransfer {
            participant_id,
            transfer,
        } => {
            if !state.members.contains_key(&participant_id) {
                return Ok(Vec::new());
            }
            vec![Event::MemberTransferredOut {
                participant_id,
                transfer,
            }]
        }
        GroupCommand::AcceptOffer { participant_id } => {
            if state.expired_offers.contains(&participant_id) {
                return Err(DomainError::OfferExpired);
            }
            let offer = state
                .offers
                .get(&participant_id)
                .ok_or(DomainError::NoOpenOffer)?;
            if context.now >= offer.expires_at {
                return Err(DomainError::OfferExpired);
            }
            vec![Event::MemberAdmitted {
                participant_id,
                path: AdmissionPath::Offer,
                transfer: offer.transfer.clone(),
                facilitator_override: false,
            }]
        }
        GroupCommand::DeclineOffer { participant_id } => {
            let offer = state
                .offers
                .get(&participant_id)
                .ok_or(DomainError::NoOpenOffer)?;
            vec![Event::SeatOfferDeclined {
                offer_id: offer.offer_id.clone(),
                participant_id,
            }]
        }
        GroupCommand::ExpireOffer { offer_id } => {
            let due = state
                .offers
                .iter()
                .find(|(_, offer)| offer.offer_id == offer_id && offer.expires_at <= context.now);
            match due {
                Some((participant_id, _)) => vec![Event::SeatOfferExpired {
                    participant_id: participant_id.clone(),
                    offer_id,
                }],
                None => return Ok(Vec::new()),
            }
        }
        GroupCommand::Hold {
            participant_id,
            reason,
        } => match state.members.get(&participant_id) {
            Some(MemberState::Active) => vec![Event::MemberHeld {
                participant_id,
                reason,
            }],
            Some(MemberState::OnHold) => return Err(DomainError::NotActive),
            None => return Err(DomainError::NotEnrolled),
        },
        GroupCommand::Resume { participant_id } => match state.members.get(&participant_id) {
            Some(MemberState::OnHold) => vec![Event::MemberResumed { participant_id }],
            Some(MemberState::Active) => return Err(DomainError::NotOnHold),
            None => return Err(DomainError::NotEnrolled),
        },
        GroupCommand::Discharge {
            participant_id,
            reason,
        } => {
            let known = state.members.contains_key(&participant_id)
                || state.offers.contains_key(&participant_id)
                || state.waitlist_position(&participant_id).is_some();
            if !known {
                return Err(DomainError::NotEnrolled);
            }
            vec![Event::MemberDischarged {
                participant_id,
                reason,
            }]
        }
    };
    Ok(with_offers(state, events, context))
}

/// Adds offers for every seat the events leave free, to the head of the waitlist.
fn with_offers(state: &Group, mut events: Vec<Event>, context: GroupContext) -> Vec<Event> {
    let after = events.iter().fold(state.clone(), evolve);
    let free = after.free_seats() as usize;
    for (index, waiting) in after.waitlist.iter().take(free).enumerate() {
        events.push(Event::SeatOffered {
            participant_id: waiting.participant_id.clone(),
            offer_id: format!("offer-{}", after.offers_made + index as u64 + 1),
            expires_at: context.now + context.offer_ttl,
            transfer: waiting.transfer.clone(),
        });
    }
    events
}

fn join(
    state: &Group,
    participant_id: String,
    transfer: Option<TransferRef>,
    facilitator_override: bool,
    context: GroupContext,
) -> Result<Vec<Event>, DomainError> {
    if state.members.contains_key(&participant_id) {
        return Err(DomainError::AlreadyActive);
    }
    if state.offers.contains_key(&participant_id) {
        return Err(DomainError::AlreadyOffered);
    }
    if state.waitlist_position(&participant_id).is_some() {
        return Err(DomainError::AlreadyWaitlisted);
    }
    if state.is_closed_to_newcomers(context.now) && !facilitator_override {
        return Err(DomainError::GroupClosed);
    }
    // Free seats are always offered to the waitlist first, so a free seat here means
    // nobody is waiting.
    if state.free_seats() > 0 {
        Ok(vec![Event::MemberAdmitted {
            participant_id,
            path: AdmissionPath::Direct,
            transfer,
            facilitator_override: facilitator_override && state.is_closed_to_newcomers(context.now),
        }])
    } else {
        Ok(vec![Event::MemberWaitlisted {
            participant_id,
            position: state.waitlist.len() as u32 + 1,
            transfer,
        }])
    }
}

fn update(
    state: &Group,
    details: &GroupDetails,
    changes: GroupChanges,
) -> Result<Vec<Event>, DomainError> {
    let mut events = Vec::new();
    let display_name = changes
        .display_name
        .unwrap_or_else(|| details.display_name.clone());
    let modality = changes.modality.unwrap_or_else(|| details.modality.clone());
    let level_of_care = changes
        .level_of_care
        .unwrap_or_else(|| details.level_of_care.clone());
    let admission_mode = changes.admission_mode.unwrap_or(details.admission_mode);
    if display_name != details.display_name
        || modality != details.modality
        || level_of_care != details.level_of_care
        || admission_mode != details.admission_mode
    {
        events.push(Event::GroupDetailsChanged {
            display_name,
            modality,
            level_of_care,
            admission_mode,
        });
    }
    if let Some(capacity) = changes.capacity
        && capacity != details.capacity
    {
        if capacity < state.occupied() {
            return Err(DomainError::CapacityBelowOccupancy {
                occupied: state.occupied(),
            });
        }
        events.push(Event::GroupCapacityChanged { capacity });
    }
    if let Some(facilitators) = changes.facilitators
        && facilitators != details.facilitators
    {
        events.push(Event::GroupFacilitatorsChanged { facilitators });
    }
    if let Some(schedule) = changes.schedule
        && schedule != details.schedule
    {
        events.push(Event::GroupScheduleChanged { schedule });
    }
    Ok(events)
}

pub fn evolve(mut state: Group, event: &Event) -> Group {
    let leave_waitlist = |state: &mut Group, participant_id: &str| {
        state
            .waitlist
            .retain(|waiting| waiting.participant_id != participant_id);
    };
    match event {
        Event::GroupCreated(details) => state.details = Some(details.clone()),
        Event::GroupDetailsChanged {
            display_name,
            modality,
            level_of_care,
            admission_mode,
        } => {
            if let Some(details) = state.details.as_mut() {
                details.display_name = display_name.clone();
                details.modality = modality.clone();
                details.level_of_care = level_of_care.clone();
                details.admission_mode = *admission_mode;
            }
        }
        Event::GroupCapacityChanged { capacity } => {
            if let Some(details) = state.details.as_mut() {
                details.capacity = *capacity;
            }
        }
        Event::GroupScheduleChanged { schedule } => {
            if let Some(details) = state.details.as_mut() {
                details.schedule = schedule.clone();
            }
        }
        Event::GroupFacilitatorsChanged { facilitators } => {
            if let Some(details) = state.details.as_mut() {
                details.facilitators = facilitators.clone();
            }
        }
        Event::GroupArchived => state.archived = true,
        Event::MemberAdmitted { participant_id, .. } => {
            state.expired_offers.remove(participant_id);
            leave_waitlist(&mut state, participant_id);
            state.offers.remove(participant_id);
            state
                .members
                .insert(participant_id.clone(), MemberState::Active);
        }
        Event::MemberWaitlisted {
            participant_id,
            transfer,
            ..
        } => {
            state.expired_offers.remove(participant_id);
            state.waitlist.push_back(Waiting {
                participant_id: participant_id.clone(),
                transfer: transfer.clone(),
            });
        }
        Event::SeatOffered {
            participant_id,
            offer_id,
            expires_at,
            transfer,
        } => {
            leave_waitlist(&mut state, participant_id);
            state.offers_made += 1;
            state.offers.insert(
                participant_id.clone(),
                Offer {
                    offer_id: offer_id.clone(),
                    expires_at: *expires_at,
                    transfer: transfer.clone(),
                },
            );
        }
        Event::SeatOfferDeclined { participant_id, .. } => {
            state.offers.remove(participant_id);
        }
        Event::SeatOfferExpired { participant_id, .. } => {
            state.offers.remove(participant_id);
            state.expired_offers.insert(participant_id.clone());
        }
        Event::MemberHeld { participant_id, .. } => {
            if let Some(member) = state.members.get_mut(participant_id) {
                *member = MemberState::OnHold;
            }
        }
        Event::MemberResumed { participant_id } => {
            if let Some(member) = state.members.get_mut(participant_id) {
                *member = MemberState::Active;
            }
        }
        Event::MemberDischarged { participant_id, .. }
        | Event::MemberTransferredOut { participant_id, .. } => {
            state.members.remove(participant_id);
            state.offers.remove(participant_id);
            leave_waitlist(&mut state, participant_id);
        }
        _ => {}
    }
    state
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use chrono::NaiveDate;

    use super::*;
    use crate::domain::scenario::given;

    fn at(text: &str) -> Time {
        text.parse().expect("RFC 3339")
    }

    fn context() -> GroupContext {
        GroupContext {
            now: at("2026-11-20T12:00:00Z"),
            offer_ttl: chrono::Duration::hours(48),
        }
    }

    fn details(capacity: u32) -> GroupDetails {
        GroupDetails {
            clinic_id: "north".into(),
            display_name: "Tuesday process group".into(),
            modality: "process".into(),
            level_of_care: "outpatient".into(),
            capacity,
            admission_mode: AdmissionMode::Rolling,
            time_zone: "America/Chicago".into(),
            facilitators: Vec::new(),
            schedule: None,
        }
    }

    fn created(capacity: u32) -> Event {
        Event::GroupCreated(details(capacity))
    }

    fn when(events: &[Event], command: GroupCommand) -> Result<Vec<Event>, DomainError> {
        decide(&given(events, evolve).state, command, context())
    }

    fn enroll(participant: &str) -> GroupCommand {
        GroupCommand::Enroll {
            participant_id: participant.into(),
            facilitator_override: false,
        }
    }

    fn admitted(participant: &str) -> Event {
        Event::MemberAdmitted {
            participant_id: participant.into(),
            path: AdmissionPath::Direct,
            transfer: None,
            facilitator_override: false,
        }
    }

    fn waitlisted(participant: &str, position: u32) -> Event {
        Event::MemberWaitlisted {
            participant_id: participant.into(),
            position,
            transfer: None,
        }
    }

    fn offered(participant: &str, number: u64) -> Event {
        Event::SeatOffered {
            participant_id: participant.into(),
            offer_id: format!("offer-{number}"),
            expires_at: context().now + context().offer_ttl,
            transfer: None,
        }
    }

    fn discharged(participant: &str) -> Event {
        Event::MemberDischarged {
            participant_id: participant.into(),
            reason: DischargeReason::Completed,
        }
    }

    fn transfer() -> TransferRef {
        TransferRef {
            transfer_id: "t1".into(),
            from_group_id: "old".into(),
            to_group_id: "new".into(),
        }
    }

    // Create

    #[test]
    fn a_group_is_created_once() {
        assert_eq!(
            when(&[], GroupCommand::Create(details(12))),
            Ok(vec![created(12)])
        );
        assert_eq!(
            when(&[created(12)], GroupCommand::Create(details(12))),
            Err(DomainError::GroupExists)
        );
    }

    #[test]
    fn commands_on_an_unknown_group_are_refused() {
        assert_eq!(when(&[], enroll("p1")), Err(DomainError::GroupNotFound));
    }

    // Enroll

    #[test]
    fn enrolling_with_a_free_seat_admits() {
        assert_eq!(
            when(&[created(2), admitted("p1")], enroll("p2")),
            Ok(vec![admitted("p2")])
        );
    }

    #[test]
    fn enrolling_into_a_full_group_waitlists_at_the_back() {
        assert_eq!(
            when(
                &[created(1), admitted("p1"), waitlisted("p2", 1)],
                enroll("p3")
            ),
            Ok(vec![waitlisted("p3", 2)])
        );
    }

    #[test]
    fn enrolling_twice_is_refused_whatever_the_state() {
        assert_eq!(
            when(&[created(1), admitted("p1")], enroll("p1")),
            Err(DomainError::AlreadyActive)
        );
        assert_eq!(
            when(
                &[created(1), admitted("p1"), waitlisted("p2", 1)],
                enroll("p2")
            ),
            Err(DomainError::AlreadyWaitlisted)
        );
        assert_eq!(
            when(
                &[created(1), waitlisted("p2", 1), offered("p2", 1)],
                enroll("p2")
            ),
            Err(DomainError::AlreadyOffered)
        );
    }

    #[test]
    fn a_closed_group_admits_before_its_first_session_and_after_it_only_by_override() {
        let mut closed = details(12);
        closed.admission_mode = AdmissionMode::Closed;
        closed.schedule = Some(Schedule {
            iso_weekdays: BTreeSet::from([2]),
            start_minute: 18 * 60,
            duration_minutes: 90,
            start_date: NaiveDate::from_ymd_opt(2026, 11, 1).expect("date"),
            end_date: None,
            exception_dates: BTreeSet::new(),
        });
        let started = [Event::GroupCreated(closed.clone())];
        assert_eq!(when(&started, enroll("p1")), Err(DomainError::GroupClosed));
        let overridden = GroupCommand::Enroll {
            participant_id: "p1".into(),
            facilitator_override: true,
        };
        assert_eq!(
            when(&started, overridden),
            Ok(vec![Event::MemberAdmitted {
                participant_id: "p1".into(),
                path: AdmissionPath::Direct,
                transfer: None,
                facilitator_override: true,
            }])
        );
        closed.schedule.as_mut().expect("schedule").start_date =
            NaiveDate::from_ymd_opt(2027, 1, 1).expect("date");
        assert_eq!(
            when(&[Event::GroupCreated(closed)], enroll("p1")),
            Ok(vec![admitted("p1")])
        );
    }

    // Seats freeing

    #[test]
    fn discharging_a_member_offers_the_seat_to_the_head_of_the_waitlist() {
        assert_eq!(
            when(
                &[
                    created(1),
                    admitted("p1"),
                    waitlisted("p2", 1),
                    waitlisted("p3", 2)
                ],
                GroupCommand::Discharge {
                    participant_id: "p1".into(),
                    reason: DischargeReason::Completed
                }
            ),
            Ok(vec![discharged("p1"), offered("p2", 1)])
        );
    }

    #[test]
    fn discharging_someone_not_enrolled_is_refused() {
        assert_eq!(
            when(
                &[created(1)],
                GroupCommand::Discharge {
                    participant_id: "p9".into(),
                    reason: DischargeReason::Withdrew
                }
            ),
            Err(DomainError::NotEnrolled)
        );
    }

    #[test]
    fn raising_the_capacity_offers_every_new_seat() {
        let changes = GroupChanges {
            capacity: Some(3),
            ..GroupChanges::default()
        };
        assert_eq!(
            when(
                &[
                    created(1),
                    admitted("p1"),
                    waitlisted("p2", 1),
                    waitlisted("p3", 2),
                    waitlisted("p4", 3)
                ],
                GroupCommand::Update(changes)
            ),
            Ok(vec![
                Event::GroupCapacityChanged { capacity: 3 },
                offered("p2", 1),
                offered("p3", 2)
            ])
        );
    }

    #[test]
    fn lowering_the_capacity_below_the_seats_taken_is_refused() {
        let changes = GroupChanges {
            capacity: Some(1),
            ..GroupChanges::default()
        };
        assert_eq!(
            when(
                &[created(2), admitted("p1"), admitted("p2")],
                GroupCommand::Update(changes)
            ),
            Err(DomainError::CapacityBelowOccupancy { occupied: 2 })
        );
    }

    #[test]
    fn an_update_records_only_what_changed() {
        let facilitators = vec![Facilitator {
            staff_id: "s1".into(),
            role: crate::domain::FacilitatorRole::Lead,
        }];
        let changes = GroupChanges {
            display_name: Some("Tuesday process group".into()),
            facilitators: Some(facilitators.clone()),
            ..GroupChanges::default()
        };
        assert_eq!(
            when(&[created(2)], GroupCommand::Update(changes)),
            Ok(vec![Event::GroupFacilitatorsChanged { facilitators }])
        );
    }

    // Offers

    #[test]
    fn accepting_an_open_offer_admits() {
        assert_eq!(
            when(
                &[created(1), waitlisted("p2", 1), offered("p2", 1)],
                GroupCommand::AcceptOffer {
                    participant_id: "p2".into()
                }
            ),
            Ok(vec![Event::MemberAdmitted {
                participant_id: "p2".into(),
                path: AdmissionPath::Offer,
                transfer: None,
                facilitator_override: false,
            }])
        );
    }

    #[test]
    fn accepting_an_expired_offer_is_refused() {
        let expired = Event::SeatOffered {
            participant_id: "p2".into(),
            offer_id: "offer-1".into(),
            expires_at: context().now,
            transfer: None,
        };
        assert_eq!(
            when(
                &[created(1), waitlisted("p2", 1), expired],
                GroupCommand::AcceptOffer {
                    participant_id: "p2".into()
                }
            ),
            Err(DomainError::OfferExpired)
        );
        assert_eq!(
            when(
                &[created(1)],
                GroupCommand::AcceptOffer {
                    participant_id: "p2".into()
                }
            ),
            Err(DomainError::NoOpenOffer)
        );
    }

    #[test]
    fn declining_passes_the_seat_to_the_next() {
        assert_eq!(
            when(
                &[
                    created(1),
                    waitlisted("p2", 1),
                    waitlisted("p3", 2),
                    offered("p2", 1)
                ],
                GroupCommand::DeclineOffer {
                    participant_id: "p2".into()
                }
            ),
            Ok(vec![
                Event::SeatOfferDeclined {
                    participant_id: "p2".into(),
                    offer_id: "offer-1".into()
                },
                offered("p3", 2)
            ])
        );
    }

    #[test]
    fn an_expired_offer_passes_to_the_next_and_expiring_is_idempotent() {
        let history = [
            created(1),
            waitlisted("p2", 1),
            waitlisted("p3", 2),
            Event::SeatOffered {
                participant_id: "p2".into(),
                offer_id: "offer-1".into(),
                expires_at: context().now,
                transfer: None,
            },
        ];
        let expire = GroupCommand::ExpireOffer {
            offer_id: "offer-1".into(),
        };
        let events = when(&history, expire.clone()).expect("expires");
        assert_eq!(
            events,
            vec![
                Event::SeatOfferExpired {
                    participant_id: "p2".into(),
                    offer_id: "offer-1".into()
                },
                offered("p3", 2)
            ]
        );
        let mut after = history.to_vec();
        after.extend(events);
        assert_eq!(
            when(&after, expire),
            Ok(vec![]),
            "already expired: nothing to do"
        );
        assert_eq!(
            when(
                &after,
                GroupCommand::AcceptOffer {
                    participant_id: "p2".into()
                }
            ),
            Err(DomainError::OfferExpired),
            "a late acceptance is told the offer expired"
        );
    }

    #[test]
    fn an_offer_that_is_not_due_does_not_expire() {
        assert_eq!(
            when(
                &[created(1), waitlisted("p2", 1), offered("p2", 1)],
                GroupCommand::ExpireOffer {
                    offer_id: "offer-1".into()
                }
            ),
            Ok(vec![])
        );
    }

    // Hold and resume

    #[test]
    fn hold_and_resume_follow_the_membership_state() {
        let hold = GroupCommand::Hold {
            participant_id: "p1".into(),
            reason: "inpatient stay".into(),
        };
        let held = Event::MemberHeld {
            participant_id: "p1".into(),
            reason: "inpatient stay".into(),
        };
        assert_eq!(
            when(&[created(1), admitted("p1")], hold.clone()),
            Ok(vec![held.clone()])
        );
        assert_eq!(
            when(&[created(1), admitted("p1"), held.clone()], hold.clone()),
            Err(DomainError::NotActive)
        );
        assert_eq!(when(&[created(1)], hold), Err(DomainError::NotEnrolled));
        let resume = GroupCommand::Resume {
            participant_id: "p1".into(),
        };
        assert_eq!(
            when(&[created(1), admitted("p1"), held], resume.clone()),
            Ok(vec![Event::MemberResumed {
                participant_id: "p1".into()
            }])
        );
        assert_eq!(
            when(&[created(1), admitted("p1")], resume),
            Err(DomainError::NotOnHold)
        );
    }

    #[test]
    fn a_member_on_hold_keeps_the_seat() {
        let state = given(
            &[
                created(1),
                admitted("p1"),
                Event::MemberHeld {
                    participant_id: "p1".into(),
                    reason: String::new(),
                },
            ],
            evolve,
        )
        .state;
        assert_eq!(state.free_seats(), 0);
    }

    // Transfers

    #[test]
    fn a_transfer_into_a_full_group_waitlists_and_the_release_frees_the_old_seat() {
        let transfer_in = GroupCommand::TransferIn {
            participant_id: "p1".into(),
            transfer: transfer(),
            facilitator_override: false,
        };
        assert_eq!(
            when(&[created(1), admitted("p9")], transfer_in),
            Ok(vec![Event::MemberWaitlisted {
                participant_id: "p1".into(),
                position: 1,
                transfer: Some(transfer()),
            }])
        );
        let release = GroupCommand::ReleaseForTransfer {
            participant_id: "p1".into(),
            transfer: transfer(),
        };
        assert_eq!(
            when(
                &[created(1), admitted("p1"), waitlisted("p2", 1)],
                release.clone()
            ),
            Ok(vec![
                Event::MemberTransferredOut {
                    participant_id: "p1".into(),
                    transfer: transfer()
                },
                offered("p2", 1)
            ])
        );
        assert_eq!(
            when(&[created(1)], release),
            Ok(vec![]),
            "already gone: nothing to release"
        );
    }

    #[test]
    fn accepting_an_offer_made_to_a_transfer_carries_the_transfer() {
        let offer = Event::SeatOffered {
            participant_id: "p1".into(),
            offer_id: "offer-1".into(),
            expires_at: context().now + context().offer_ttl,
            transfer: Some(transfer()),
        };
        let accepted = when(
            &[created(1), waitlisted("p1", 1), offer],
            GroupCommand::AcceptOffer {
                participant_id: "p1".into(),
            },
        );
        assert!(matches!(
            accepted.as_deref(),
            Ok([Event::MemberAdmitted {
                transfer: Some(_),
                ..
            }])
        ));
    }

    // Archive

    #[test]
    fn a_group_with_members_cannot_be_archived_and_an_archived_group_takes_no_one() {
        assert_eq!(
            when(&[created(1), admitted("p1")], GroupCommand::Archive),
            Err(DomainError::GroupHasMembers)
        );
        assert_eq!(
            when(&[created(1)], GroupCommand::Archive),
            Ok(vec![Event::GroupArchived])
        );
        assert_eq!(
            when(&[created(1), Event::GroupArchived], enroll("p1")),
            Err(DomainError::GroupArchived)
        );
    }
}

#[cfg(test)]
mod properties {
    //! Random command sequences: the state each command saw equals the replay of the
    //! log up to it, and seats never exceed capacity.

    use proptest::prelude::*;

    use super::*;

    fn command() -> impl Strategy<Value = GroupCommand> {
        let participant = (0u8..8).prop_map(|n| format!("p{n}"));
        prop_oneof![
            participant
                .clone()
                .prop_map(|participant_id| GroupCommand::Enroll {
                    participant_id,
                    facilitator_override: false
                }),
            participant
                .clone()
                .prop_map(|participant_id| GroupCommand::Discharge {
                    participant_id,
                    reason: DischargeReason::Completed
                }),
            participant
                .clone()
                .prop_map(|participant_id| GroupCommand::AcceptOffer { participant_id }),
            participant
                .clone()
                .prop_map(|participant_id| GroupCommand::DeclineOffer { participant_id }),
            participant
                .clone()
                .prop_map(|participant_id| GroupCommand::Hold {
                    participant_id,
                    reason: String::new()
                }),
            participant
                .clone()
                .prop_map(|participant_id| GroupCommand::Resume { participant_id }),
            (1u64..6).prop_map(|n| GroupCommand::ExpireOffer {
                offer_id: format!("offer-{n}")
            }),
            (1u32..6).prop_map(|capacity| GroupCommand::Update(GroupChanges {
                capacity: Some(capacity),
                ..GroupChanges::default()
            })),
            participant.prop_map(|participant_id| GroupCommand::TransferIn {
                participant_id,
                transfer: TransferRef {
                    transfer_id: "t".into(),
                    from_group_id: "a".into(),
                    to_group_id: "b".into()
                },
                facilitator_override: false,
            }),
        ]
    }

    proptest! {
        #[test]
        fn replaying_the_log_gives_the_state_the_commands_saw(commands in proptest::collection::vec((command(), 0i64..100), 1..60)) {
            let start: Time = "2026-11-20T12:00:00Z".parse().expect("time");
            let mut log = vec![Event::GroupCreated(GroupDetails {
                clinic_id: "c".into(),
                display_name: "g".into(),
                modality: "process".into(),
                level_of_care: "outpatient".into(),
                capacity: 2,
                admission_mode: AdmissionMode::Rolling,
                time_zone: "UTC".into(),
                facilitators: Vec::new(),
                schedule: None,
            })];
            let mut state = log.iter().fold(Group::default(), evolve);
            for (minutes, (command, advance)) in commands.into_iter().enumerate() {
                let context = GroupContext {
                    now: start + chrono::Duration::hours(minutes as i64 + advance),
                    offer_ttl: chrono::Duration::hours(24),
                };
                if let Ok(events) = decide(&state, command, context) {
                    state = events.iter().fold(state, evolve);
                    log.extend(events);
                }
                let replayed = log.iter().fold(Group::default(), evolve);
                prop_assert_eq!(&replayed, &state);
                prop_assert!(state.occupied() <= state.capacity());
                // A free seat is never left while someone waits.
                prop_assert!(state.free_seats() == 0 || state.waitlist.is_empty());
            }
        }
    }
}
