//! Queries at the edge: parse the request (resource names into `circle-names` types,
//! every bad field collected), call `app::Queries`, which checks access and reads, and
//! map its views to protobuf (`wire`). Page tokens are read and made here.

use circle_audit::Purpose;
use circle_grpc::{ApiError, Caller, Target, Violations};
use circle_names::{ClinicName, GroupName, MembershipName, NetworkName, ParticipantName};
use circle_proto::enrollment::v1 as pb;
use tonic::Request;

use super::convert::{self, named, optional_id};
use super::{ApiResult, EnrollmentApi, caller, wire};
use crate::app::access::{self, Operation};
use crate::app::{DisclosureRange, GroupsIn, GroupsWanted, OpenSeatSearch, Page};
use crate::codec;

/// The page a request asks for, recording bad page fields.
fn page(violations: &mut Violations, page_size: i32, page_token: &str) -> Page {
    let (size, offset) = violations.page(page_size, page_token);
    Page { size, offset }
}

/// The purpose a request states in its `circle-purpose` metadata, recording a bad one
/// with the request's other bad fields.
fn purpose(
    violations: &mut Violations,
    stated: Result<Option<Purpose>, String>,
) -> Option<Purpose> {
    violations
        .check(circle_audit::PURPOSE_METADATA, stated)
        .flatten()
}

fn next_page_token(page: Page, returned: usize) -> String {
    circle_grpc::next_page_token(page.offset, page.size, returned)
}

/// Which list of a group's memberships.
#[derive(Clone, Copy)]
enum Roster {
    Members,
    Waitlist,
}

/// What a request for a page of a group's members or waitlist asks.
struct RosterPage<'a> {
    parent: &'a str,
    page_size: i32,
    page_token: &'a str,
    consistency_token: &'a str,
}

impl EnrollmentApi {
    pub(super) async fn get_clinic(
        &self,
        request: Request<pb::GetClinicRequest>,
    ) -> ApiResult<pb::GetClinicResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::default();
        let name = named::<ClinicName>(&caller, &mut violations, "name", &request.name)?;
        early(
            &caller,
            Operation::GetClinic,
            name.as_ref().map(|name| [name.clinic.as_str()]),
            None,
        )?;
        let name = violations.finish(name)?;
        let clinic = self
            .queries
            .get_clinic(&caller, &name, &request.consistency_token)
            .await?;
        Ok(pb::GetClinicResponse {
            clinic: Some(wire::clinic(clinic)),
        })
    }

    pub(super) async fn list_clinics(
        &self,
        request: Request<pb::ListClinicsRequest>,
    ) -> ApiResult<pb::ListClinicsResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::default();
        let network = named::<NetworkName>(&caller, &mut violations, "parent", &request.parent)?;
        early(
            &caller,
            Operation::ListClinics,
            network.as_ref().map(|_| []),
            None,
        )?;
        let page = page(&mut violations, request.page_size, &request.page_token);
        let network = violations.finish(network)?;
        let clinics = self
            .queries
            .list_clinics(
                &caller,
                &network,
                request.include_archived,
                page,
                &request.consistency_token,
            )
            .await?;
        Ok(pb::ListClinicsResponse {
            next_page_token: next_page_token(page, clinics.len()),
            clinics: clinics.into_iter().map(wire::clinic).collect(),
        })
    }

    pub(super) async fn get_group(
        &self,
        request: Request<pb::GetGroupRequest>,
    ) -> ApiResult<pb::GetGroupResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::default();
        let name = named::<GroupName>(&caller, &mut violations, "name", &request.name)?;
        early(
            &caller,
            Operation::GetGroup,
            name.as_ref().map(|name| [name.clinic.as_str()]),
            None,
        )?;
        let name = violations.finish(name)?;
        let group = self
            .queries
            .get_group(&caller, &name, &request.consistency_token)
            .await?;
        Ok(pb::GetGroupResponse {
            group: Some(wire::group(group)),
        })
    }

    pub(super) async fn list_groups(
        &self,
        request: Request<pb::ListGroupsRequest>,
    ) -> ApiResult<pb::ListGroupsResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::default();
        // The parent is the network or one of its clinics.
        let parent = match NetworkName::parse(&request.parent) {
            Ok(network) => {
                caller.require_network(network.network.as_str(), &request.parent)?;
                Some(GroupsIn::Network(network))
            }
            Err(_) => named::<ClinicName>(&caller, &mut violations, "parent", &request.parent)?
                .map(GroupsIn::Clinic),
        };
        match &parent {
            Some(GroupsIn::Clinic(clinic)) => {
                early(
                    &caller,
                    Operation::ListGroups,
                    Some([clinic.clinic.as_str()]),
                    None,
                )?;
            }
            Some(GroupsIn::Network(_)) => {
                early(&caller, Operation::ListGroups, Some([]), None)?;
            }
            None => early::<0>(&caller, Operation::ListGroups, None, None)?,
        }
        let modality = optional_id(&mut violations, "modality", &request.modality);
        let level_of_care = optional_id(&mut violations, "level_of_care", &request.level_of_care);
        let page = page(&mut violations, request.page_size, &request.page_token);
        let parent = violations.finish(parent)?;
        let wanted = GroupsWanted {
            parent,
            modality,
            level_of_care,
            include_archived: request.include_archived,
        };
        let groups = self
            .queries
            .list_groups(&caller, &wanted, page, &request.consistency_token)
            .await?;
        Ok(pb::ListGroupsResponse {
            next_page_token: next_page_token(page, groups.len()),
            groups: groups.into_iter().map(wire::group).collect(),
        })
    }

    pub(super) async fn get_participant(
        &self,
        request: Request<pb::GetParticipantRequest>,
    ) -> ApiResult<pb::GetParticipantResponse> {
        let caller = caller(&request)?;
        let stated = circle_audit::stated_purpose(request.metadata());
        let request = request.into_inner();
        let mut violations = Violations::default();
        let name = named::<ParticipantName>(&caller, &mut violations, "name", &request.name)?;
        let purpose = purpose(&mut violations, stated);
        let name = violations.finish(name)?;
        let participant = self
            .queries
            .get_participant(&caller, &name, &request.consistency_token, purpose)
            .await?;
        Ok(pb::GetParticipantResponse {
            participant: Some(wire::participant(participant)),
        })
    }

    pub(super) async fn get_membership(
        &self,
        request: Request<pb::GetMembershipRequest>,
    ) -> ApiResult<pb::GetMembershipResponse> {
        let caller = caller(&request)?;
        let stated = circle_audit::stated_purpose(request.metadata());
        let request = request.into_inner();
        let mut violations = Violations::default();
        let name = named::<MembershipName>(&caller, &mut violations, "name", &request.name)?;
        early(
            &caller,
            Operation::GetMembership,
            name.as_ref().map(|name| [name.clinic.as_str()]),
            name.as_ref().map(|name| name.membership.as_str()),
        )?;
        let purpose = purpose(&mut violations, stated);
        let name = violations.finish(name)?;
        let membership = self
            .queries
            .get_membership(&caller, &name, &request.consistency_token, purpose)
            .await?;
        Ok(pb::GetMembershipResponse {
            membership: Some(wire::membership(membership)),
        })
    }

    pub(super) async fn list_group_members(
        &self,
        request: Request<pb::ListGroupMembersRequest>,
    ) -> ApiResult<pb::ListGroupMembersResponse> {
        let caller = caller(&request)?;
        let stated = circle_audit::stated_purpose(request.metadata());
        let request = request.into_inner();
        let (memberships, next_page_token) = self
            .group_memberships(
                &caller,
                Roster::Members,
                RosterPage {
                    parent: &request.parent,
                    page_size: request.page_size,
                    page_token: &request.page_token,
                    consistency_token: &request.consistency_token,
                },
                stated,
            )
            .await?;
        Ok(pb::ListGroupMembersResponse {
            memberships,
            next_page_token,
        })
    }

    pub(super) async fn list_waitlist(
        &self,
        request: Request<pb::ListWaitlistRequest>,
    ) -> ApiResult<pb::ListWaitlistResponse> {
        let caller = caller(&request)?;
        let stated = circle_audit::stated_purpose(request.metadata());
        let request = request.into_inner();
        let (memberships, next_page_token) = self
            .group_memberships(
                &caller,
                Roster::Waitlist,
                RosterPage {
                    parent: &request.parent,
                    page_size: request.page_size,
                    page_token: &request.page_token,
                    consistency_token: &request.consistency_token,
                },
                stated,
            )
            .await?;
        Ok(pb::ListWaitlistResponse {
            memberships,
            next_page_token,
        })
    }

    /// A page of a group's members or of its waitlist, and the next page's token.
    async fn group_memberships(
        &self,
        caller: &Caller,
        roster: Roster,
        asked: RosterPage<'_>,
        stated: Result<Option<Purpose>, String>,
    ) -> ApiResult<(Vec<pb::Membership>, String)> {
        let RosterPage {
            parent,
            page_size,
            page_token,
            consistency_token,
        } = asked;
        let mut violations = Violations::default();
        let group = named::<GroupName>(caller, &mut violations, "parent", parent)?;
        let operation = match roster {
            Roster::Members => Operation::ListGroupMembers,
            Roster::Waitlist => Operation::ListWaitlist,
        };
        early(
            caller,
            operation,
            group.as_ref().map(|group| [group.clinic.as_str()]),
            None,
        )?;
        let page = page(&mut violations, page_size, page_token);
        let purpose = purpose(&mut violations, stated);
        let group = violations.finish(group)?;
        let memberships = match roster {
            Roster::Members => {
                self.queries
                    .list_group_members(caller, &group, page, consistency_token, purpose)
                    .await?
            }
            Roster::Waitlist => {
                self.queries
                    .list_waitlist(caller, &group, page, consistency_token, purpose)
                    .await?
            }
        };
        let next_page_token = next_page_token(page, memberships.len());
        Ok((
            memberships.into_iter().map(wire::membership).collect(),
            next_page_token,
        ))
    }

    pub(super) async fn list_participant_memberships(
        &self,
        request: Request<pb::ListParticipantMembershipsRequest>,
    ) -> ApiResult<pb::ListParticipantMembershipsResponse> {
        let caller = caller(&request)?;
        let stated = circle_audit::stated_purpose(request.metadata());
        let request = request.into_inner();
        let mut violations = Violations::default();
        let participant =
            named::<ParticipantName>(&caller, &mut violations, "parent", &request.parent)?;
        early(
            &caller,
            Operation::ListParticipantMemberships,
            participant.as_ref().map(|_| []),
            participant
                .as_ref()
                .map(|participant| participant.participant.as_str()),
        )?;
        let page = page(&mut violations, request.page_size, &request.page_token);
        let purpose = purpose(&mut violations, stated);
        let participant = violations.finish(participant)?;
        let memberships = self
            .queries
            .list_participant_memberships(
                &caller,
                &participant,
                page,
                &request.consistency_token,
                purpose,
            )
            .await?;
        Ok(pb::ListParticipantMembershipsResponse {
            next_page_token: next_page_token(page, memberships.len()),
            memberships: memberships.into_iter().map(wire::membership).collect(),
        })
    }

    pub(super) async fn search_open_seats(
        &self,
        request: Request<pb::SearchOpenSeatsRequest>,
    ) -> ApiResult<pb::SearchOpenSeatsResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::default();
        let network = named::<NetworkName>(&caller, &mut violations, "parent", &request.parent)?;
        let clinic = if request.clinic.is_empty() {
            None
        } else {
            named::<ClinicName>(&caller, &mut violations, "clinic", &request.clinic)?
        };
        let modality = optional_id(&mut violations, "modality", &request.modality);
        let level_of_care = optional_id(&mut violations, "level_of_care", &request.level_of_care);
        if request.weekdays.len() > convert::MAX_WEEKDAYS {
            violations.add(
                "weekdays",
                format!("at most {} weekdays", convert::MAX_WEEKDAYS),
            );
        }
        let weekdays: Vec<u32> = request
            .weekdays
            .iter()
            .take(convert::MAX_WEEKDAYS)
            .filter_map(|day| violations.check("weekdays", convert::iso_weekday(*day)))
            .collect();
        let earliest = if request.earliest_start_time.is_empty() {
            Some(0)
        } else {
            violations.check(
                "earliest_start_time",
                convert::local_time(&request.earliest_start_time),
            )
        };
        let latest = if request.latest_start_time.is_empty() {
            Some(24 * 60 - 1)
        } else {
            violations.check(
                "latest_start_time",
                convert::local_time(&request.latest_start_time),
            )
        };
        if let (Some(earliest), Some(latest)) = (earliest, latest)
            && earliest > latest
        {
            violations.add(
                "latest_start_time",
                "must not be before earliest_start_time",
            );
        }
        let page = page(&mut violations, request.page_size, &request.page_token);
        violations.into_result()?;
        let (Some(network), Some(earliest), Some(latest)) = (network, earliest, latest) else {
            return Err(ApiError::internal());
        };
        let search = OpenSeatSearch {
            network,
            clinic,
            modality,
            level_of_care,
            weekdays,
            earliest_start_minute: earliest,
            latest_start_minute: latest,
        };
        let found = self
            .queries
            .search_open_seats(&caller, &search, page, &request.consistency_token)
            .await?;
        let next_page_token = if found.more {
            next_page_token(page, found.seats.len())
        } else {
            String::new()
        };
        Ok(pb::SearchOpenSeatsResponse {
            open_seats: found
                .seats
                .into_iter()
                .map(|seat| pb::OpenSeat {
                    free_seats: seat.free_seats,
                    next_session_time: Some(codec::timestamp(seat.next_session)),
                    group: Some(wire::group(seat.group)),
                })
                .collect(),
            next_page_token,
        })
    }
}

impl EnrollmentApi {
    pub(super) async fn list_disclosures(
        &self,
        request: Request<pb::ListDisclosuresRequest>,
    ) -> ApiResult<pb::ListDisclosuresResponse> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::default();
        let participant =
            named::<ParticipantName>(&caller, &mut violations, "parent", &request.parent)?;
        early(
            &caller,
            Operation::ListDisclosures,
            participant.as_ref().map(|_| []),
            participant
                .as_ref()
                .map(|participant| participant.participant.as_str()),
        )?;
        let any_time = circle_calendar::TimeRange::protobuf();
        let start = violations.check(
            "start_time",
            circle_calendar::parse_required_time(request.start_time, &any_time),
        );
        let end = violations.check(
            "end_time",
            circle_calendar::parse_required_time(request.end_time, &any_time),
        );
        let range = match (start, end) {
            (Some(start), Some(end)) => {
                violations.check("end_time", DisclosureRange::new(start, end))
            }
            _ => None,
        };
        let page = page(&mut violations, request.page_size, &request.page_token);
        violations.into_result()?;
        let (Some(participant), Some(range)) = (participant, range) else {
            return Err(ApiError::internal());
        };
        let disclosures = self
            .queries
            .list_disclosures(&caller, &participant, range, page)
            .await?;
        Ok(pb::ListDisclosuresResponse {
            next_page_token: next_page_token(page, disclosures.len()),
            disclosures: disclosures.into_iter().map(wire::disclosure).collect(),
        })
    }
}

/// Role and scope before bad fields ([`access::check_early`]): `clinics` are those the
/// request's names show (`None` when they did not parse: the role only), `participant`
/// the record it names.
fn early<const N: usize>(
    caller: &Caller,
    operation: Operation,
    clinics: Option<[&str; N]>,
    participant: Option<&str>,
) -> ApiResult<()> {
    let target = clinics.as_ref().map(|clinics| Target {
        clinics,
        participant,
        ..Target::default()
    });
    access::check_early(caller, operation, target)
}
