//! The key store against a real PostgreSQL, as the services' runtime role.

use circle_testkit::TestEnv;
use circle_vault::store::{KeyStore, SCHEMA, StoreError};
use circle_vault::{Context, MasterKeys};

const SAM: Context<'static> = Context {
    network: "acme",
    participant: "sam",
    field: "profile.given_name",
};

fn keys(entries: &[&str]) -> anyhow::Result<MasterKeys> {
    Ok(MasterKeys::parse(&entries.join(","))?)
}

#[tokio::test]
async fn a_participant_has_one_key_until_forgotten_and_none_after() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let k1 = MasterKeys::generate_entry("k1")?;
    let store = KeyStore::open(env.database().await?, keys(&[&k1])?).await?;

    // Two services making sam's first key at once end up with the same one.
    let (first, second) = tokio::join!(
        store.sealing_key("acme", "sam"),
        store.sealing_key("acme", "sam")
    );
    let sealed = first?.seal(SAM, "Samantha")?;
    assert_eq!(second?.open(SAM, &sealed)?, "Samantha");
    let opening = store.opening_key("acme", "sam").await?;
    assert_eq!(
        opening
            .map(|key| key.open(SAM, &sealed))
            .transpose()?
            .as_deref(),
        Some("Samantha")
    );
    // Another network's sam is another person, and the wall keeps their key apart.
    let others = store.sealing_key("other", "sam").await?;
    let other_sealed = others.seal(
        Context {
            network: "other",
            ..SAM
        },
        "Sam",
    )?;
    assert!(others.open(SAM, &sealed).is_err());
    let seen_from_acme: i64 = {
        let mut acme = circle_projection::tenant_transaction(&env.runtime_pool, "acme").await?;
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {SCHEMA}.data_keys WHERE network = 'other'"
        )))
        .fetch_one(&mut *acme)
        .await?
    };
    assert_eq!(seen_from_acme, 0);
    let _ = other_sealed;
    let pat = store.sealing_key("acme", "pat").await?;
    let pats = pat.seal(
        Context {
            participant: "pat",
            ..SAM
        },
        "Pat",
    )?;

    assert!(store.forget("acme", "sam").await?, "sam had a key");
    assert!(!store.forget("acme", "sam").await?, "already forgotten");
    assert!(store.opening_key("acme", "sam").await?.is_none());
    assert!(matches!(
        store.sealing_key("acme", "sam").await,
        Err(StoreError::Forgotten)
    ));
    // Pat is untouched.
    let pat = store.opening_key("acme", "pat").await?.expect("pat's key");
    assert_eq!(
        pat.open(
            Context {
                participant: "pat",
                ..SAM
            },
            &pats
        )?,
        "Pat"
    );
    // Someone forgotten before they had a key never gets one.
    assert!(!store.forget("acme", "riley").await?);
    assert!(matches!(
        store.sealing_key("acme", "riley").await,
        Err(StoreError::Forgotten)
    ));

    // Nothing of sam's key is left in the row.
    let (wrapped, master): (Option<Vec<u8>>, Option<String>) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT wrapped, master_key_id FROM {SCHEMA}.data_keys WHERE network = 'acme' AND participant_id = 'sam'"
    )))
    .fetch_one(&env.pool)
    .await?;
    assert_eq!((wrapped, master), (None, None));
    // Not even the services' own role can bring a tombstone back or remove it.
    let mut acme = circle_projection::tenant_transaction(&env.runtime_pool, "acme").await?;
    let revived = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {SCHEMA}.data_keys SET forgotten_at = NULL, wrapped = 'x', master_key_id = 'k1'
         WHERE network = 'acme' AND participant_id = 'sam'"
    )))
    .execute(&mut *acme)
    .await;
    assert!(revived.is_err(), "a tombstone was updated: {revived:?}");
    drop(acme);
    let mut acme = circle_projection::tenant_transaction(&env.runtime_pool, "acme").await?;
    let removed = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM {SCHEMA}.data_keys WHERE network = 'acme' AND participant_id = 'sam'"
    )))
    .execute(&mut *acme)
    .await;
    assert!(removed.is_err(), "a tombstone was deleted: {removed:?}");
    Ok(())
}

#[tokio::test]
async fn keys_are_rewrapped_by_a_new_master_key_and_the_old_one_retired() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let k1 = MasterKeys::generate_entry("k1")?;
    let k2 = MasterKeys::generate_entry("k2")?;
    let old = KeyStore::open(env.database().await?, keys(&[&k1])?).await?;
    let sealed = old
        .sealing_key("acme", "sam")
        .await?
        .seal(SAM, "Samantha")?;

    let rotated = KeyStore::open(env.database().await?, keys(&[&k2, &k1])?).await?;
    assert_eq!(rotated.rewrap("acme").await?, 1);
    assert_eq!(rotated.rewrap("acme").await?, 0, "nothing left to re-wrap");

    let retired = KeyStore::open(env.database().await?, keys(&[&k2])?).await?;
    let key = retired
        .opening_key("acme", "sam")
        .await?
        .expect("re-wrapped");
    assert_eq!(key.open(SAM, &sealed)?, "Samantha");
    Ok(())
}

/// An event-like value with personal fields of two participants.
struct Note {
    author: String,
    about: String,
    text: String,
    reply: String,
}

impl circle_vault::Personal for Note {
    fn personal_fields<'a>(&'a mut self, _owner: &'a str) -> Vec<circle_vault::Field<'a>> {
        vec![
            circle_vault::Field::new(&self.about, circle_vault::field::CHECK_IN, &mut self.text),
            circle_vault::Field::new(
                &self.author,
                circle_vault::field::ENCOURAGEMENT,
                &mut self.reply,
            ),
        ]
    }
}

#[tokio::test]
async fn one_answer_opens_many_participants_fields_and_shows_the_forgotten_as_redacted()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let store = KeyStore::open(
        env.database().await?,
        keys(&[&MasterKeys::generate_entry("k1")?])?,
    )
    .await?;
    let mut notes = vec![
        Note {
            author: "pat".into(),
            about: "sam".into(),
            text: "Ninety days today".into(),
            reply: "Proud of you".into(),
        },
        Note {
            author: "sam".into(),
            about: "pat".into(),
            text: "Rough week".into(),
            reply: String::new(),
        },
    ];
    let sealer = store.sealer("acme", ["sam", "pat"]).await?;
    sealer.seal_all("", &mut notes)?;
    for note in &notes {
        assert!(circle_vault::is_sealed(&note.text), "sealed");
        assert!(!note.text.contains("days") && !note.text.contains("Rough"));
    }
    assert!(notes[1].reply.is_empty(), "empty stays empty");
    // Sealing again keeps what is sealed already (a value copied between services).
    let before = notes[0].text.clone();
    sealer.seal_all("", &mut notes)?;
    assert_eq!(notes[0].text, before);
    // A value made to look sealed is sealed all the same.
    assert_ne!(
        sealer.seal("sam", circle_vault::field::GOAL, "v1.AAAA")?,
        "v1.AAAA"
    );

    let mut opened = notes
        .iter()
        .map(|note| Note {
            author: note.author.clone(),
            about: note.about.clone(),
            text: note.text.clone(),
            reply: note.reply.clone(),
        })
        .collect::<Vec<_>>();
    store.open_all("acme", "", &mut opened).await?;
    assert_eq!(opened[0].text, "Ninety days today");
    assert_eq!(opened[0].reply, "Proud of you");
    assert_eq!(opened[1].text, "Rough week");

    store.forget("acme", "sam").await?;
    store.open_all("acme", "", &mut notes).await?;
    assert_eq!(notes[0].text, circle_vault::REDACTED, "sam's text");
    assert_eq!(notes[0].reply, "Proud of you", "pat's reply");
    assert_eq!(notes[1].text, "Rough week", "about pat");
    assert!(matches!(
        store.sealer("acme", ["pat", "sam"]).await,
        Err(StoreError::Forgotten)
    ));
    // Another network cannot open acme's values.
    let mut moved = vec![Note {
        author: "pat".into(),
        about: "pat".into(),
        text: sealer.seal("pat", circle_vault::field::CHECK_IN, "Mine")?,
        reply: String::new(),
    }];
    store.sealer("other", ["pat"]).await?;
    store.open_all("other", "", &mut moved).await?;
    assert_eq!(moved[0].text, circle_vault::REDACTED);
    Ok(())
}
