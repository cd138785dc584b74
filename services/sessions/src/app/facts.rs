//! What the roster projection knows that a command checks before it runs: who was on
//! a group's roster, the other members' names (for the note check) and where a group
//! is. Best effort: the roster follows the enrollment log by a moment. The names are
//! held sealed, as enrollment sealed them, and opened here for the one check that
//! needs them in clear.

use circle_grpc::{ApiError, Caller};
use circle_names::{GroupName, SessionName};
use circle_vault::{Field, Personal, REDACTED, field};
use sqlx::PgPool;

use super::{Commands, database_error, tenant};
use crate::domain::Time;

/// Whether the caller is listed as a facilitator of the group (in the clinic its name
/// gives), as the roster knows it. A group the roster does not know has none: asking
/// about one tells nothing a group of others would not.
pub(super) async fn facilitates(
    pool: &PgPool,
    caller: &Caller,
    group: &GroupName,
) -> Result<bool, ApiError> {
    let listed: Option<bool> = sqlx::query_scalar(
        "SELECT $4 = ANY(facilitators) FROM sessions_roster.groups
         WHERE network = $1 AND group_id = $2 AND clinic_id = $3",
    )
    .bind(group.network.as_str())
    .bind(group.group.as_str())
    .bind(group.clinic.as_str())
    .bind(&caller.actor_id)
    .fetch_optional(&mut *super::tenant(pool, &group.network).await?)
    .await
    .map_err(database_error)?;
    Ok(listed.unwrap_or(false))
}

/// A member's names as the roster holds them (sealed, as enrollment sealed them).
#[derive(Debug, Clone, PartialEq, Eq)]
struct MemberNames {
    participant_id: String,
    given_name: String,
    family_name: String,
    preferred_name: String,
    aliases: Vec<String>,
}

impl From<(String, String, String, String, Vec<String>)> for MemberNames {
    fn from(
        (participant_id, given_name, family_name, preferred_name, aliases): (
            String,
            String,
            String,
            String,
            Vec<String>,
        ),
    ) -> Self {
        Self {
            participant_id,
            given_name,
            family_name,
            preferred_name,
            aliases,
        }
    }
}

/// Each with the member's key, under its own field (as enrollment sealed them).
impl Personal for MemberNames {
    fn personal_fields<'a>(&'a mut self, _owner: &'a str) -> Vec<Field<'a>> {
        let MemberNames {
            participant_id,
            given_name: given,
            family_name: family,
            preferred_name: preferred,
            aliases,
        } = self;
        let participant = participant_id.as_str();
        [
            Field::new(participant, field::GIVEN_NAME, given),
            Field::new(participant, field::FAMILY_NAME, family),
            Field::new(participant, field::PREFERRED_NAME, preferred),
        ]
        .into_iter()
        .chain(
            aliases
                .iter_mut()
                .map(|alias| Field::new(participant, field::ALIAS, alias)),
        )
        .collect()
    }
}

/// The opened names of `members`, trimmed, each once (an alias recorded again is
/// stored again: sealed values cannot be compared), without blanks and without what a
/// forgotten member's names open to.
fn names_to_look_for(members: Vec<MemberNames>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for member in members {
        let full_name = [member.given_name, member.family_name, member.preferred_name];
        for name in full_name.into_iter().chain(member.aliases) {
            let name = name.trim();
            if !name.is_empty() && name != REDACTED && !names.iter().any(|seen| seen == name) {
                names.push(name.to_owned());
            }
        }
    }
    names
}

/// Where a group is, as the roster knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct GroupPlace {
    pub clinic_id: String,
    pub archived: bool,
}

impl Commands {
    /// Was the participant an active member of the group at `starts_at`?
    pub(super) async fn on_roster(
        &self,
        session: &SessionName,
        participant_id: &str,
        starts_at: Time,
    ) -> Result<bool, ApiError> {
        let mut tenant = tenant(&self.pool, &session.network).await?;
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1::bigint FROM sessions_roster.member_periods
             WHERE network = $1 AND group_id = $2 AND participant_id = $3
               AND from_at <= $4 AND (to_at IS NULL OR to_at > $4) LIMIT 1",
        )
        .bind(session.network.as_str())
        .bind(session.group.as_str())
        .bind(participant_id)
        .bind(starts_at)
        .fetch_optional(&mut *tenant)
        .await
        .map_err(database_error)?;
        Ok(found.is_some())
    }

    /// Names and aliases of everyone else who has been a member of the group, opened
    /// with one fetch of their keys; each once. A forgotten member's (redacted) are no
    /// names to look for.
    pub(super) async fn other_member_names(
        &self,
        session: &SessionName,
        participant_id: &str,
    ) -> Result<Vec<String>, ApiError> {
        let mut tenant = tenant(&self.pool, &session.network).await?;
        let rows: Vec<(String, String, String, String, Vec<String>)> = sqlx::query_as(
            "SELECT n.participant_id, n.given_name, n.family_name, n.preferred_name, n.aliases
             FROM sessions_roster.member_names n
             WHERE n.network = $1 AND n.participant_id <> $3 AND n.participant_id IN (
                SELECT participant_id FROM sessions_roster.member_periods WHERE network = $1 AND group_id = $2)",
        )
        .bind(session.network.as_str())
        .bind(session.group.as_str())
        .bind(participant_id)
        .fetch_all(&mut *tenant)
        .await
        .map_err(database_error)?;
        drop(tenant);
        let mut members: Vec<MemberNames> = rows.into_iter().map(MemberNames::from).collect();
        super::personal::open(&self.vault, &session.network, &mut members).await?;
        Ok(names_to_look_for(members))
    }

    /// The group's clinic and whether it is archived; `None` for a group the roster
    /// does not know.
    pub(super) async fn group_place(
        &self,
        group: &GroupName,
    ) -> Result<Option<GroupPlace>, ApiError> {
        let mut tenant = tenant(&self.pool, &group.network).await?;
        let known: Option<(String, bool)> = sqlx::query_as(
            "SELECT clinic_id, archived FROM sessions_roster.groups WHERE network = $1 AND group_id = $2",
        )
        .bind(group.network.as_str())
        .bind(group.group.as_str())
        .fetch_optional(&mut *tenant)
        .await
        .map_err(database_error)?;
        Ok(known.map(|(clinic_id, archived)| GroupPlace {
            clinic_id,
            archived,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(participant: &str, names: [&str; 3], aliases: &[&str]) -> MemberNames {
        MemberNames {
            participant_id: participant.to_owned(),
            given_name: names[0].to_owned(),
            family_name: names[1].to_owned(),
            preferred_name: names[2].to_owned(),
            aliases: aliases.iter().map(|alias| (*alias).to_owned()).collect(),
        }
    }

    #[test]
    fn every_name_and_alias_is_opened_with_its_members_key_and_field() {
        let mut jordan = member("jordan", ["Jordan", "Kim", "Jo"], &["Sunny", "JK"]);
        let fields: Vec<(&str, &str, String)> = jordan
            .personal_fields("")
            .into_iter()
            .map(|field| (field.participant, field.name, field.value.clone()))
            .collect();
        assert_eq!(
            fields,
            [
                ("jordan", field::GIVEN_NAME, "Jordan".to_owned()),
                ("jordan", field::FAMILY_NAME, "Kim".to_owned()),
                ("jordan", field::PREFERRED_NAME, "Jo".to_owned()),
                ("jordan", field::ALIAS, "Sunny".to_owned()),
                ("jordan", field::ALIAS, "JK".to_owned()),
            ]
        );
    }

    #[test]
    fn names_are_looked_for_once_and_never_a_redacted_one() {
        let names = names_to_look_for(vec![
            member(
                "jordan",
                ["Jordan", "Kim", ""],
                &["Sunny", " Sunny ", "Sunny"],
            ),
            member("riley", [REDACTED, REDACTED, ""], &[REDACTED]),
            member("kim", ["Kim", "Lee", " "], &[]),
        ]);
        assert_eq!(names, ["Jordan", "Kim", "Sunny", "Lee"]);
    }
}
