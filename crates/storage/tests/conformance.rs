//! The `Store` conformance suite: every behaviour of the storage interface, run against every backend.
//!
//! Each shared test body is an `async fn(DynStore) -> TestResult` listed in [`conformance_tests!`], which
//! generates `sqlite::<name>` (always) and `postgres::<name>` (against a fresh schema of the database named
//! by `LINKVAULT_TEST_DATABASE_URL`; without it the test prints that it was skipped and passes). A few
//! backend-specific tests (the SQLite file scrubbing, PostgreSQL migrations racing on an empty schema) are
//! generated into the same modules.
//!
//! Bodies return `Result` so that setup failures surface with their message; assertions panic as usual.

use std::collections::BTreeSet;
use std::error::Error;
use std::future::Future;
use std::io::Write as _;
use std::path::Path;

use linkvault_domain::{ClientId, ConnectionStatus, IntegrationType, NaturalKey, Scope, TokenId, TokenMode, UserId};
use linkvault_storage::testing::{Backend, TEST_DATABASE_URL_VAR, TestSchema, fresh_store, postgres_test_url};
use linkvault_storage::{
    ApiKeyRecord, AppliedDeletions, AuditEntry, AuditSeal, ClientRecord, ConnectionRecord, ConnectionSummary,
    CredentialsUpdate, DeletionRecord, DeliveryOutcome, DynStore, InsertOutcome, KeyVersionRecord, LeaseRelease,
    OutboxEvent, ReauthMark, RefreshState, Rekey, RewrapCandidate, Store, WebhookEndpointRecord, WebhookFormat,
};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use tokio::task::JoinSet;
use uuid::Uuid;

type TestResult = Result<(), Box<dyn Error + Send + Sync>>;

/// How many tasks race in the concurrency tests.
const RACERS: usize = 20;

// ------------------------------------------------------------------------------------------------
// Harness
// ------------------------------------------------------------------------------------------------

/// Says that a PostgreSQL test did not run: a line per test (shown with `--nocapture`/`--show-output`), and
/// once per run a notice on stderr that is shown even when output is captured.
fn report_postgres_skipped(name: &str) {
    static NOTICE: std::sync::Once = std::sync::Once::new();
    println!("postgres::{name}: skipped, {TEST_DATABASE_URL_VAR} is not set");
    NOTICE.call_once(|| {
        // Written to the stderr handle directly (libtest captures only the print macros), in one write so
        // that it does not interleave with the test runner's own lines.
        let notice = format!(
            "\nNOTE: {TEST_DATABASE_URL_VAR} is not set: the postgres::* conformance tests pass without running.\n"
        );
        let _ = std::io::stderr().write_all(notice.as_bytes());
    });
}

/// Runs one shared test body against a fresh, migrated store of `backend`.
async fn run<F, Fut>(backend: Backend, name: &str, body: F) -> TestResult
where
    F: FnOnce(DynStore) -> Fut,
    Fut: Future<Output = TestResult>,
{
    if !Backend::all().contains(&backend) {
        report_postgres_skipped(name);
        return Ok(());
    }
    let fresh = fresh_store(backend).await?;
    assert_eq!(
        fresh.store.backend(),
        match backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    );
    // `fresh` (and with it the SQLite temp directory) lives until the body is done.
    body(fresh.store.clone()).await
}

macro_rules! conformance_tests {
    (
        shared: [$($name:ident),+ $(,)?],
        sqlite_only: [$($sqlite_only:ident),* $(,)?],
        postgres_only: [$($postgres_only:ident),* $(,)?] $(,)?
    ) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> super::TestResult {
                    super::run(super::Backend::Sqlite, stringify!($name), super::$name).await
                }
            )+
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $sqlite_only() -> super::TestResult {
                    super::$sqlite_only().await
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> super::TestResult {
                    super::run(super::Backend::Postgres, stringify!($name), super::$name).await
                }
            )+
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $postgres_only() -> super::TestResult {
                    match super::postgres_test_url() {
                        Some(url) => super::$postgres_only(url).await,
                        None => {
                            super::report_postgres_skipped(stringify!($postgres_only));
                            Ok(())
                        }
                    }
                }
            )*
        }
    };
}

conformance_tests! {
    shared: [
        migrate_is_idempotent,
        concurrent_migrate_calls_succeed,
        meta_get_insert_if_absent_set_delete,
        meta_replace_if_is_guarded_and_all_or_nothing,
        key_version_rewrap_is_compare_and_set,
        webhook_endpoints_are_paged_in_order_and_resealed_by_compare_and_set,
        key_versions_single_current_flag_and_duplicates,
        wrap_count_counts_every_wrap,
        delete_key_version_only_when_unused_and_not_current,
        rewrap_is_compare_and_set_without_bumping_version,
        clients_and_token_mode,
        api_keys_find_list_and_revoke,
        api_key_revocation_is_scoped_to_the_client,
        duplicate_api_key_digest_is_rejected,
        insert_connection_and_natural_key_taken,
        natural_key_lookup_distinguishes_every_component,
        get_connection_round_trips_every_field,
        update_credentials_is_compare_and_set,
        delete_connection_only_for_owner_and_retires_token_id,
        apply_deletions_deletes_and_retires_idempotently,
        concurrent_inserts_same_natural_key_exactly_one_wins,
        concurrent_updates_same_expected_version_exactly_one_wins,
        claim_due_takes_due_active_free_rows_oldest_first,
        expired_leases_are_reclaimed_unless_a_grant_was_in_flight,
        grant_in_flight_requires_version_owner_and_lease_time,
        complete_refresh_is_compare_and_set_on_version_and_owner,
        release_lease_and_reauth_mark_write_their_event_atomically,
        credential_writes_end_refresh_state_and_write_events,
        finished_outbox_events_are_purged_after_their_retention,
        concurrent_claimers_never_share_a_row,
        last_error_is_kept_short,
        audit_appends_are_gapless_and_each_sees_the_previous_mac,
        audit_records_page_in_order_and_filter_by_time,
    ],
    sqlite_only: [
        delete_scrubs_credentials_and_data_key_from_sqlite_files,
        reapplied_deletion_scrubs_sqlite_files,
    ],
    postgres_only: [concurrent_migrate_on_empty_schema, audit_appends_from_two_instances_form_one_chain],
}

// ------------------------------------------------------------------------------------------------
// Fixtures
// ------------------------------------------------------------------------------------------------

/// A fixed instant with millisecond precision, `offset_ms` after a base; stores keep milliseconds.
fn ts(offset_ms: i64) -> OffsetDateTime {
    datetime!(2025-06-01 12:34:56.789 UTC) + Duration::milliseconds(offset_ms)
}

/// `n` random bytes (from UUIDv4s: 122 random bits per 16 bytes), distinctive enough to search files for.
fn random_bytes(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 16);
    while out.len() < n {
        out.extend_from_slice(Uuid::new_v4().as_bytes());
    }
    out.truncate(n);
    out
}

fn key_version(version: u32) -> KeyVersionRecord {
    KeyVersionRecord {
        version,
        wrapped_key: random_bytes(60),
        is_current: false,
        wrap_count: 0,
        created_at: ts(i64::from(version) * 1000),
    }
}

fn client(name: &str) -> ClientRecord {
    ClientRecord {
        client_id: ClientId::new_random(),
        name: name.to_owned(),
        token_mode: TokenMode::Managed,
        created_at: ts(-86_400_000),
        api_rate_limit: None,
    }
}

fn api_key(client_id: ClientId, scope: Scope, secret_prefix: &str, created_offset_ms: i64) -> ApiKeyRecord {
    ApiKeyRecord {
        key_id: Uuid::new_v4(),
        client_id,
        scope,
        digest: random_bytes(32),
        secret_prefix: secret_prefix.to_owned(),
        created_at: ts(created_offset_ms),
        revoked_at: None,
    }
}

/// A valid connection with every optional field set and every numeric field distinct, so a swapped column
/// shows up. `key_version` must exist and `client_id` must be a stored client.
fn connection(client_id: ClientId, key_version: u32, user: &str, integration: &str, scope: Scope) -> ConnectionRecord {
    ConnectionRecord {
        token_id: TokenId::new_random(),
        client_id,
        user_id: user.to_owned(),
        integration: integration.to_owned(),
        scope,
        status: ConnectionStatus::Active,
        key_version,
        wrapped_data_key: random_bytes(64),
        data_key_generation: 3,
        data_key_uses: 17,
        credentials: random_bytes(64),
        account_id: Some("acct-0042".to_owned()),
        account_name: Some("Main account — “crypto” ✓".to_owned()),
        access_expires_at: Some(ts(3_600_001)),
        refresh_expires_at: Some(ts(86_400_002)),
        last_refreshed_at: Some(ts(-5_003)),
        refresh_count: 5,
        created_at: ts(-60_004),
        updated_at: ts(-1_005),
        version: 1,
        refresh: RefreshState {
            next_refresh_at: Some(ts(3_000_003)),
            lease_owner: None,
            lease_until: None,
            last_refreshed_by: Some("engine-7".to_owned()),
            grant_in_flight: false,
            refresh_failures: 2,
            last_error: Some("token endpoint answered HTTP 503".to_owned()),
            reauth_warned_at: Some(ts(9)),
        },
    }
}

fn natural_key(r: &ConnectionRecord) -> Result<NaturalKey, Box<dyn Error + Send + Sync>> {
    Ok(NaturalKey {
        client_id: r.client_id,
        user_id: UserId::parse(&r.user_id)?,
        integration: IntegrationType::parse(&r.integration)?,
        scope: r.scope,
    })
}

/// An update that changes every updatable field relative to [`connection`].
fn credentials_update(r: &ConnectionRecord, rekey: Option<Rekey>) -> CredentialsUpdate {
    CredentialsUpdate {
        token_id: r.token_id,
        expected_version: r.version,
        status: ConnectionStatus::ReauthRequired,
        credentials: random_bytes(80),
        data_key_uses: r.data_key_uses + 1,
        rekey,
        account_id: Some("acct-0043".to_owned()),
        account_name: None,
        access_expires_at: None,
        refresh_expires_at: Some(ts(172_800_006)),
        last_refreshed_at: Some(ts(7)),
        refresh_count: r.refresh_count + 1,
        updated_at: ts(8),
        next_refresh_at: Some(ts(3_000_010)),
        reauth_warned_at: None,
        event: None,
    }
}

/// The record `update` should produce when applied to `before`.
fn applied(before: &ConnectionRecord, u: &CredentialsUpdate) -> ConnectionRecord {
    let mut after = before.clone();
    after.status = u.status;
    after.credentials = u.credentials.clone();
    after.data_key_uses = u.data_key_uses;
    if let Some(rekey) = &u.rekey {
        after.key_version = rekey.key_version;
        after.wrapped_data_key = rekey.wrapped_data_key.clone();
        after.data_key_generation = rekey.data_key_generation;
    }
    after.account_id = u.account_id.clone();
    after.account_name = u.account_name.clone();
    after.access_expires_at = u.access_expires_at;
    after.refresh_expires_at = u.refresh_expires_at;
    after.last_refreshed_at = u.last_refreshed_at;
    after.refresh_count = u.refresh_count;
    after.updated_at = u.updated_at;
    after.version = before.version + 1;
    // New credentials end any refresh in progress and reset the failure bookkeeping.
    after.refresh = RefreshState {
        next_refresh_at: u.next_refresh_at,
        reauth_warned_at: u.reauth_warned_at,
        ..RefreshState::default()
    };
    after
}

/// One stored client and one current key version (1): what every connection test needs.
struct Setup {
    client: ClientId,
}

async fn setup(store: &DynStore) -> Result<Setup, Box<dyn Error + Send + Sync>> {
    assert!(store.insert_key_version(&key_version(1), true).await?);
    let c = client("acme");
    store.insert_client(&c, &[]).await?;
    Ok(Setup { client: c.client_id })
}

async fn wrap_count(store: &DynStore, version: u32) -> Result<u64, Box<dyn Error + Send + Sync>> {
    let versions = store.key_versions().await?;
    let v = versions.iter().find(|v| v.version == version).ok_or(format!("key version {version} is missing"))?;
    Ok(v.wrap_count)
}

async fn current_versions(store: &DynStore) -> Result<Vec<u32>, Box<dyn Error + Send + Sync>> {
    Ok(store.key_versions().await?.iter().filter(|v| v.is_current).map(|v| v.version).collect())
}

// ------------------------------------------------------------------------------------------------
// Migrations
// ------------------------------------------------------------------------------------------------

async fn migrate_is_idempotent(store: DynStore) -> TestResult {
    store.set_meta("survives", "migrations").await?;
    // `fresh_store` migrated once already; twice more must be no-ops that keep the data.
    store.migrate().await?;
    store.migrate().await?;
    store.ping().await?;
    assert_eq!(store.get_meta("survives").await?.as_deref(), Some("migrations"));
    assert_eq!(store.count_connections().await?, 0);
    assert!(store.key_versions().await?.is_empty());
    Ok(())
}

async fn concurrent_migrate_calls_succeed(store: DynStore) -> TestResult {
    let mut tasks = JoinSet::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.spawn(async move { store.migrate().await });
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    store.ping().await?;
    assert_eq!(store.count_connections().await?, 0);
    Ok(())
}

/// Several instances migrating the same empty schema at once: the advisory lock serialises them, so none
/// fails on "relation already exists" or a duplicate `schema_migrations` row.
async fn concurrent_migrate_on_empty_schema(base_url: String) -> TestResult {
    let schema = TestSchema::create(&base_url).await?;
    let mut stores = Vec::new();
    for _ in 0..6 {
        stores.push(schema.store().await?);
    }
    let mut tasks = JoinSet::new();
    for store in &stores {
        let store = store.clone();
        tasks.spawn(async move { store.migrate().await });
    }
    let mut failures = Vec::new();
    while let Some(result) = tasks.join_next().await {
        if let Err(e) = result? {
            failures.push(e.to_string());
        }
    }
    assert!(failures.is_empty(), "concurrent migrations failed: {failures:?}");
    let store = stores.first().ok_or("no store")?;
    store.migrate().await?;
    assert_eq!(store.count_connections().await?, 0);
    assert!(store.key_versions().await?.is_empty());
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Meta
// ------------------------------------------------------------------------------------------------

async fn meta_get_insert_if_absent_set_delete(store: DynStore) -> TestResult {
    assert_eq!(store.get_meta("fingerprint").await?, None);

    assert_eq!(store.insert_meta_if_absent("fingerprint", "first").await?, "first");
    // The second insert keeps the first value and says so.
    assert_eq!(store.insert_meta_if_absent("fingerprint", "second").await?, "first");
    assert_eq!(store.get_meta("fingerprint").await?.as_deref(), Some("first"));

    store.set_meta("fingerprint", "third").await?;
    assert_eq!(store.get_meta("fingerprint").await?.as_deref(), Some("third"));
    store.set_meta("other", "x").await?;
    assert_eq!(store.get_meta("other").await?.as_deref(), Some("x"));

    store.delete_meta("fingerprint").await?;
    assert_eq!(store.get_meta("fingerprint").await?, None);
    assert_eq!(store.get_meta("other").await?.as_deref(), Some("x"));
    // Deleting what is absent is not an error.
    store.delete_meta("fingerprint").await?;

    assert_eq!(store.insert_meta_if_absent("fingerprint", "fourth").await?, "fourth");
    assert_eq!(store.get_meta("fingerprint").await?.as_deref(), Some("fourth"));
    Ok(())
}

async fn meta_replace_if_is_guarded_and_all_or_nothing(store: DynStore) -> TestResult {
    store.set_meta("fingerprint", "old").await?;
    store.set_meta("keyring", "sealed-under-old").await?;
    store.set_meta("pending", "new").await?;
    // A guard that does not hold changes nothing.
    let set = [("keyring", "sealed-under-new"), ("fingerprint", "new")];
    assert!(!store.replace_meta_if(("fingerprint", "other"), &set, &["pending"]).await?);
    assert!(!store.replace_meta_if(("absent", "old"), &set, &["pending"]).await?);
    assert_eq!(store.get_meta("keyring").await?.as_deref(), Some("sealed-under-old"));
    assert_eq!(store.get_meta("pending").await?.as_deref(), Some("new"));
    // One that holds sets (inserting or replacing) and deletes together, the guard key included.
    let set = [("keyring", "sealed-under-new"), ("fingerprint", "new"), ("fresh", "x")];
    assert!(store.replace_meta_if(("fingerprint", "old"), &set, &["pending", "never-there"]).await?);
    assert_eq!(store.get_meta("fingerprint").await?.as_deref(), Some("new"));
    assert_eq!(store.get_meta("keyring").await?.as_deref(), Some("sealed-under-new"));
    assert_eq!(store.get_meta("fresh").await?.as_deref(), Some("x"));
    assert_eq!(store.get_meta("pending").await?, None);
    // The old guard no longer holds.
    assert!(!store.replace_meta_if(("fingerprint", "old"), &[("keyring", "again")], &[]).await?);
    assert_eq!(store.get_meta("keyring").await?.as_deref(), Some("sealed-under-new"));
    Ok(())
}

async fn key_version_rewrap_is_compare_and_set(store: DynStore) -> TestResult {
    let (v1, v2) = (key_version(1), key_version(2));
    assert!(store.insert_key_version(&v1, true).await?);
    assert!(store.insert_key_version(&v2, true).await?);
    let replacement = random_bytes(60);
    // Not the stored bytes (or not this version): nothing changes.
    assert!(!store.rewrap_key_version(1, &v2.wrapped_key, &replacement).await?);
    assert!(!store.rewrap_key_version(3, &v1.wrapped_key, &replacement).await?);
    assert!(store.rewrap_key_version(1, &v1.wrapped_key, &replacement).await?);
    assert!(!store.rewrap_key_version(1, &v1.wrapped_key, &random_bytes(60)).await?, "the old bytes are gone");
    let versions = store.key_versions().await?;
    assert_eq!(versions[0].wrapped_key, replacement);
    assert_eq!(versions[1].wrapped_key, v2.wrapped_key);
    assert_eq!(versions.iter().map(|v| (v.version, v.is_current)).collect::<Vec<_>>(), vec![(1, false), (2, true)]);
    Ok(())
}

async fn webhook_endpoints_are_paged_in_order_and_resealed_by_compare_and_set(store: DynStore) -> TestResult {
    let mut ids = Vec::new();
    for i in 0..5 {
        let c = client(&format!("hooks-{i}"));
        store.insert_client(&c, &[]).await?;
        let record = WebhookEndpointRecord {
            client_id: c.client_id,
            url: format!("https://hooks.example/{i}"),
            secret_sealed: random_bytes(40),
            format: WebhookFormat::Standard,
            created_at: ts(0),
            updated_at: ts(0),
        };
        store.set_webhook_endpoint(&record).await?;
        ids.push(c.client_id);
    }
    // Every endpoint once, in client-id order, two at a time.
    let (mut seen, mut after) = (Vec::new(), None);
    for _ in 0..10 {
        let page = store.webhook_endpoints_after(after, 2).await?;
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.client_id);
        seen.extend(page.iter().map(|e| e.client_id));
    }
    let seen: Vec<String> = seen.iter().map(ToString::to_string).collect();
    let mut expected: Vec<String> = ids.iter().map(ToString::to_string).collect();
    expected.sort();
    assert_eq!(seen, expected);
    // Re-sealing replaces only the bytes it was read with.
    let first = store.get_webhook_endpoint(ids[0]).await?.ok_or("endpoint lost")?;
    let resealed = random_bytes(40);
    assert!(!store.reseal_webhook_secret(ids[0], &random_bytes(40), &resealed).await?);
    assert!(!store.reseal_webhook_secret(ids[1], &first.secret_sealed, &resealed).await?);
    assert!(store.reseal_webhook_secret(ids[0], &first.secret_sealed, &resealed).await?);
    let after_reseal = store.get_webhook_endpoint(ids[0]).await?.ok_or("endpoint lost")?;
    assert_eq!(after_reseal.secret_sealed, resealed);
    assert_eq!((after_reseal.url, after_reseal.updated_at), (first.url, first.updated_at));
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Key versions
// ------------------------------------------------------------------------------------------------

async fn key_versions_single_current_flag_and_duplicates(store: DynStore) -> TestResult {
    assert!(store.key_versions().await?.is_empty());

    let mut v1 = key_version(1);
    v1.wrap_count = 7;
    assert!(store.insert_key_version(&v1, true).await?);
    let listed = store.key_versions().await?;
    assert_eq!(listed, vec![KeyVersionRecord { is_current: true, ..v1.clone() }]);

    let v2 = key_version(2);
    assert!(store.insert_key_version(&v2, true).await?);
    assert_eq!(current_versions(&store).await?, vec![2]);

    // Not made current: the current flag stays where it was.
    let v3 = key_version(3);
    assert!(store.insert_key_version(&v3, false).await?);
    assert_eq!(current_versions(&store).await?, vec![2]);

    // A duplicate version number is refused and changes nothing, even with make_current.
    let dup = key_version(2);
    assert!(!store.insert_key_version(&dup, true).await?);
    assert!(!store.insert_key_version(&key_version(1), false).await?);
    assert_eq!(current_versions(&store).await?, vec![2]);
    let listed = store.key_versions().await?;
    assert_eq!(
        listed,
        vec![
            KeyVersionRecord { is_current: false, ..v1.clone() },
            KeyVersionRecord { is_current: true, ..v2.clone() },
            KeyVersionRecord { is_current: false, ..v3.clone() },
        ]
    );

    // Making a higher version current, then a lower one (inserted later, e.g. after a restore): there is
    // always exactly one current version, whatever the row order.
    assert!(store.insert_key_version(&key_version(10), true).await?);
    assert_eq!(current_versions(&store).await?, vec![10]);
    assert!(store.insert_key_version(&key_version(5), true).await?);
    assert_eq!(current_versions(&store).await?, vec![5]);
    let versions: Vec<u32> = store.key_versions().await?.iter().map(|v| v.version).collect();
    assert_eq!(versions, vec![1, 2, 3, 5, 10], "key_versions is ordered by version");
    Ok(())
}

async fn wrap_count_counts_every_wrap(store: DynStore) -> TestResult {
    let s = setup(&store).await?;
    assert_eq!(wrap_count(&store, 1).await?, 0);

    let a = connection(s.client, 1, "user-a", "coinbase", Scope::Read);
    let b = connection(s.client, 1, "user-b", "coinbase", Scope::Read);
    assert_eq!(store.insert_connection(&a, None).await?, InsertOutcome::Inserted);
    assert_eq!(wrap_count(&store, 1).await?, 1);
    assert_eq!(store.insert_connection(&b, None).await?, InsertOutcome::Inserted);
    assert_eq!(wrap_count(&store, 1).await?, 2);

    // A refused insert wraps nothing.
    let taken = ConnectionRecord { token_id: TokenId::new_random(), ..a.clone() };
    assert_eq!(store.insert_connection(&taken, None).await?, InsertOutcome::NaturalKeyTaken);
    assert_eq!(wrap_count(&store, 1).await?, 2);

    assert!(store.insert_key_version(&key_version(2), true).await?);
    assert_eq!(wrap_count(&store, 2).await?, 0);

    // Credentials without a new data key wrap nothing.
    let plain = credentials_update(&a, None);
    assert!(store.update_credentials(&plain).await?);
    assert_eq!((wrap_count(&store, 1).await?, wrap_count(&store, 2).await?), (2, 0));
    let a = applied(&a, &plain);

    // A rekey wraps a new data key under the new version.
    let rekey = Rekey { key_version: 2, wrapped_data_key: random_bytes(64), data_key_generation: 4 };
    let with_rekey = credentials_update(&a, Some(rekey.clone()));
    assert!(store.update_credentials(&with_rekey).await?);
    assert_eq!((wrap_count(&store, 1).await?, wrap_count(&store, 2).await?), (2, 1));

    // A rekey that loses its compare-and-set wraps nothing.
    let stale = credentials_update(&a, Some(rekey));
    assert!(!store.update_credentials(&stale).await?);
    assert_eq!((wrap_count(&store, 1).await?, wrap_count(&store, 2).await?), (2, 1));

    // Rewrapping under the new version counts for it; a stale rewrap does not.
    let candidates = store.connections_needing_rewrap(2, 10).await?;
    assert_eq!(candidates.len(), 1);
    let candidate = candidates.first().ok_or("no candidate")?;
    assert_eq!(candidate.token_id, b.token_id);
    assert!(store.rewrap_data_key(candidate, 2, &random_bytes(64)).await?);
    assert_eq!((wrap_count(&store, 1).await?, wrap_count(&store, 2).await?), (2, 2));
    assert!(!store.rewrap_data_key(candidate, 2, &random_bytes(64)).await?);
    assert_eq!((wrap_count(&store, 1).await?, wrap_count(&store, 2).await?), (2, 2));
    Ok(())
}

async fn delete_key_version_only_when_unused_and_not_current(store: DynStore) -> TestResult {
    let s = setup(&store).await?;
    let a = connection(s.client, 1, "user-a", "coinbase", Scope::Read);
    let b = connection(s.client, 1, "user-b", "kraken", Scope::Write);
    assert_eq!(store.insert_connection(&a, None).await?, InsertOutcome::Inserted);
    assert_eq!(store.insert_connection(&b, None).await?, InsertOutcome::Inserted);
    assert!(store.insert_key_version(&key_version(2), true).await?);
    assert!(store.insert_key_version(&key_version(3), false).await?);
    assert_eq!(store.count_connections_by_key_version().await?, vec![(1, 2), (2, 0), (3, 0)]);

    assert!(!store.delete_key_version_if_unused(2).await?, "the current version must not be deleted");
    assert!(!store.delete_key_version_if_unused(1).await?, "a version in use must not be deleted");
    assert!(!store.delete_key_version_if_unused(99).await?, "an unknown version deletes nothing");
    assert!(store.delete_key_version_if_unused(3).await?, "an unused old version can go");
    assert!(!store.delete_key_version_if_unused(3).await?);
    let versions: Vec<u32> = store.key_versions().await?.iter().map(|v| v.version).collect();
    assert_eq!(versions, vec![1, 2]);

    // Once every row is rewrapped, the old version can go.
    let candidates = store.connections_needing_rewrap(2, 100).await?;
    assert_eq!(candidates.len(), 2);
    assert!(store.rewrap_data_key(candidates.first().ok_or("no candidate")?, 2, &random_bytes(64)).await?);
    assert_eq!(store.count_connections_by_key_version().await?, vec![(1, 1), (2, 1)]);
    assert!(!store.delete_key_version_if_unused(1).await?);
    assert!(store.rewrap_data_key(candidates.get(1).ok_or("no candidate")?, 2, &random_bytes(64)).await?);
    assert_eq!(store.count_connections_by_key_version().await?, vec![(1, 0), (2, 2)]);
    assert!(store.delete_key_version_if_unused(1).await?);
    assert_eq!(store.count_connections_by_key_version().await?, vec![(2, 2)]);
    assert_eq!(current_versions(&store).await?, vec![2]);
    Ok(())
}

async fn rewrap_is_compare_and_set_without_bumping_version(store: DynStore) -> TestResult {
    let s = setup(&store).await?;
    let mut old = Vec::new();
    for i in 0..5 {
        let r = connection(s.client, 1, &format!("user-{i}"), "coinbase", Scope::Read);
        assert_eq!(store.insert_connection(&r, None).await?, InsertOutcome::Inserted);
        old.push(r);
    }
    assert!(store.insert_key_version(&key_version(2), true).await?);
    let fresh = connection(s.client, 2, "user-new", "coinbase", Scope::Read);
    assert_eq!(store.insert_connection(&fresh, None).await?, InsertOutcome::Inserted);

    // Only rows under another version are candidates, at most `limit` of them.
    assert_eq!(store.connections_needing_rewrap(2, 3).await?.len(), 3);
    assert!(store.connections_needing_rewrap(2, 0).await?.is_empty());
    let candidates = store.connections_needing_rewrap(2, 100).await?;
    let expected: BTreeSet<TokenId> = old.iter().map(|r| r.token_id).collect();
    assert_eq!(candidates.iter().map(|c| c.token_id).collect::<BTreeSet<_>>(), expected);
    for c in &candidates {
        let r = old.iter().find(|r| r.token_id == c.token_id).ok_or("unknown candidate")?;
        assert_eq!(
            c,
            &RewrapCandidate {
                token_id: r.token_id,
                client_id: r.client_id,
                key_version: 1,
                data_key_generation: r.data_key_generation,
                wrapped_data_key: r.wrapped_data_key.clone(),
            }
        );
    }
    // Relative to version 1, the one row under version 2 is the candidate.
    let under_1 = store.connections_needing_rewrap(1, 100).await?;
    assert_eq!(under_1.iter().map(|c| c.token_id).collect::<Vec<_>>(), vec![fresh.token_id]);

    let target = old.first().ok_or("no rows")?;
    let candidate =
        candidates.iter().find(|c| c.token_id == target.token_id).ok_or("target is not a candidate")?.clone();
    let new_wrapped = random_bytes(64);

    // Stale key version or data-key generation: refused, row untouched.
    let stale_version = RewrapCandidate { key_version: 7, ..candidate.clone() };
    assert!(!store.rewrap_data_key(&stale_version, 2, &new_wrapped).await?);
    let stale_generation =
        RewrapCandidate { data_key_generation: candidate.data_key_generation + 1, ..candidate.clone() };
    assert!(!store.rewrap_data_key(&stale_generation, 2, &new_wrapped).await?);
    let unknown = RewrapCandidate { token_id: TokenId::new_random(), ..candidate.clone() };
    assert!(!store.rewrap_data_key(&unknown, 2, &new_wrapped).await?);
    assert_eq!(store.get_connection(target.token_id).await?.as_ref(), Some(target));

    // Current candidate: only key_version and wrapped_data_key change; the fencing version does not.
    assert!(store.rewrap_data_key(&candidate, 2, &new_wrapped).await?);
    let expected = ConnectionRecord { key_version: 2, wrapped_data_key: new_wrapped.clone(), ..target.clone() };
    assert_eq!(store.get_connection(target.token_id).await?, Some(expected.clone()));

    // The same candidate again is now stale.
    assert!(!store.rewrap_data_key(&candidate, 2, &random_bytes(64)).await?);
    assert_eq!(store.get_connection(target.token_id).await?, Some(expected.clone()));
    assert_eq!(store.connections_needing_rewrap(2, 100).await?.len(), 4);

    // A credentials write made before the rewrap (same fencing version) still succeeds after it.
    let update = credentials_update(target, None);
    assert!(store.update_credentials(&update).await?);
    assert_eq!(store.get_connection(target.token_id).await?, Some(applied(&expected, &update)));

    // A rekey bumps the generation, which fences off a rewrap read before it.
    let other = old.get(1).ok_or("no rows")?;
    let other_candidate =
        candidates.iter().find(|c| c.token_id == other.token_id).ok_or("other is not a candidate")?.clone();
    let rekey = Rekey { key_version: 1, wrapped_data_key: random_bytes(64), data_key_generation: 4 };
    assert!(store.update_credentials(&credentials_update(other, Some(rekey))).await?);
    assert!(!store.rewrap_data_key(&other_candidate, 2, &random_bytes(64)).await?);
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Clients and API keys
// ------------------------------------------------------------------------------------------------

async fn clients_and_token_mode(store: DynStore) -> TestResult {
    let c = client("Acme — “Trading” ✓");
    let read = api_key(c.client_id, Scope::Read, "lv_r_abcd", 1);
    let write = api_key(c.client_id, Scope::Write, "lv_w_efgh", 2);
    store.insert_client(&c, &[read.clone(), write.clone()]).await?;
    assert_eq!(store.get_client(c.client_id).await?, Some(c.clone()));
    assert_eq!(store.get_client(ClientId::new_random()).await?, None);

    // Clients without keys are fine too.
    let bare = ClientRecord { token_mode: TokenMode::Client, ..client("bare") };
    store.insert_client(&bare, &[]).await?;
    assert_eq!(store.get_client(bare.client_id).await?, Some(bare.clone()));
    assert!(store.list_api_keys(bare.client_id).await?.is_empty());

    let found = store.find_api_key(&write.digest).await?.ok_or("write key not found")?;
    assert_eq!(
        (found.key_id, found.client_id, found.scope, found.digest.as_slice(), found.token_mode),
        (write.key_id, c.client_id, Scope::Write, write.digest.as_slice(), TokenMode::Managed)
    );

    assert!(store.set_client_token_mode(c.client_id, TokenMode::Client).await?);
    assert_eq!(store.get_client(c.client_id).await?, Some(ClientRecord { token_mode: TokenMode::Client, ..c.clone() }));
    // find_api_key joins the client's current mode.
    assert_eq!(store.find_api_key(&read.digest).await?.ok_or("read key not found")?.token_mode, TokenMode::Client);
    assert!(store.set_client_token_mode(c.client_id, TokenMode::Managed).await?);
    assert_eq!(store.find_api_key(&read.digest).await?.ok_or("read key not found")?.token_mode, TokenMode::Managed);
    assert_eq!(store.get_client(bare.client_id).await?, Some(bare), "other clients are untouched");

    assert!(!store.set_client_token_mode(ClientId::new_random(), TokenMode::Client).await?);

    // A client's own API rate limit: stored, joined into the key lookup, cleared; clients start without one.
    assert_eq!(store.find_api_key(&read.digest).await?.ok_or("read key not found")?.api_rate_limit, None);
    assert!(store.set_client_api_rate_limit(c.client_id, Some(120)).await?);
    assert_eq!(store.get_client(c.client_id).await?.ok_or("client")?.api_rate_limit, Some(120));
    assert_eq!(store.find_api_key(&write.digest).await?.ok_or("write key not found")?.api_rate_limit, Some(120));
    assert!(store.set_client_api_rate_limit(c.client_id, Some(u32::MAX)).await?);
    assert_eq!(store.find_api_key(&read.digest).await?.ok_or("read key")?.api_rate_limit, Some(u32::MAX));
    assert!(store.set_client_api_rate_limit(c.client_id, None).await?);
    assert_eq!(store.find_api_key(&read.digest).await?.ok_or("read key not found")?.api_rate_limit, None);
    assert!(!store.set_client_api_rate_limit(ClientId::new_random(), Some(5)).await?);
    let limited = ClientRecord { api_rate_limit: Some(7), ..client("limited") };
    store.insert_client(&limited, &[]).await?;
    assert_eq!(store.get_client(limited.client_id).await?, Some(limited));
    Ok(())
}

async fn api_keys_find_list_and_revoke(store: DynStore) -> TestResult {
    let c = client("acme");
    let k1 = api_key(c.client_id, Scope::Read, "lv_aaaa", 10);
    let k2 = api_key(c.client_id, Scope::Write, "lv_bbbb", 20);
    store.insert_client(&c, std::slice::from_ref(&k1)).await?;
    store.insert_api_key(&k2).await?;
    // Two keys with the same creation time, to exercise the tie-break on key_id.
    let k3 = api_key(c.client_id, Scope::Read, "lv_cccc", 30);
    let k4 = api_key(c.client_id, Scope::Write, "lv_dddd", 30);
    store.insert_api_key(&k4).await?;
    store.insert_api_key(&k3).await?;
    // A key stored already revoked is never found.
    let dead = ApiKeyRecord { revoked_at: Some(ts(5)), ..api_key(c.client_id, Scope::Write, "lv_eeee", 5) };
    store.insert_api_key(&dead).await?;
    assert_eq!(store.find_api_key(&dead.digest).await?, None);

    let mut expected = vec![dead.clone(), k1.clone(), k2.clone(), k3.clone(), k4.clone()];
    expected.sort_by_key(|k| (k.created_at, k.key_id));
    assert_eq!(store.list_api_keys(c.client_id).await?, expected);

    for k in [&k1, &k2, &k3, &k4] {
        let found = store.find_api_key(&k.digest).await?.ok_or("live key not found")?;
        assert_eq!(
            (found.key_id, found.client_id, found.scope, &found.digest),
            (k.key_id, k.client_id, k.scope, &k.digest)
        );
        assert_eq!(found.token_mode, TokenMode::Managed);
    }
    assert_eq!(store.find_api_key(&random_bytes(32)).await?, None);
    assert_eq!(store.find_api_key(&[]).await?, None);

    // By secret prefix.
    let at = ts(1_000);
    assert_eq!(store.revoke_api_keys(c.client_id, "lv_aaaa", at).await?, 1);
    assert_eq!(store.find_api_key(&k1.digest).await?, None);
    assert_eq!(store.revoke_api_keys(c.client_id, "lv_aaaa", ts(2_000)).await?, 0, "already revoked");

    // By key id, as a UUID string.
    assert_eq!(store.revoke_api_keys(c.client_id, &k2.key_id.to_string(), at).await?, 1);
    assert_eq!(store.find_api_key(&k2.digest).await?, None);
    // By key id in another spelling of the same UUID.
    assert_eq!(store.revoke_api_keys(c.client_id, &k3.key_id.simple().to_string().to_uppercase(), at).await?, 1);
    assert_eq!(store.find_api_key(&k3.digest).await?, None);

    // Nothing matching: nothing revoked.
    assert_eq!(store.revoke_api_keys(c.client_id, "lv_zzzz", at).await?, 0);
    assert_eq!(store.revoke_api_keys(c.client_id, &Uuid::new_v4().to_string(), at).await?, 0);
    assert!(store.find_api_key(&k4.digest).await?.is_some());

    let revoked = |k: &ApiKeyRecord| ApiKeyRecord { revoked_at: Some(at), ..k.clone() };
    let mut expected = vec![dead, revoked(&k1), revoked(&k2), revoked(&k3), k4];
    expected.sort_by_key(|k| (k.created_at, k.key_id));
    assert_eq!(store.list_api_keys(c.client_id).await?, expected);
    Ok(())
}

async fn api_key_revocation_is_scoped_to_the_client(store: DynStore) -> TestResult {
    let a = client("a");
    let b = client("b");
    // Both clients have a key with the same secret prefix.
    let ka = api_key(a.client_id, Scope::Write, "lv_same", 1);
    let kb = api_key(b.client_id, Scope::Write, "lv_same", 1);
    let kb2 = api_key(b.client_id, Scope::Read, "lv_other", 2);
    store.insert_client(&a, std::slice::from_ref(&ka)).await?;
    store.insert_client(&b, &[kb.clone(), kb2.clone()]).await?;

    assert_eq!(store.revoke_api_keys(a.client_id, "lv_same", ts(100)).await?, 1);
    assert_eq!(store.find_api_key(&ka.digest).await?, None);
    assert_eq!(store.find_api_key(&kb.digest).await?.ok_or("b's key was revoked")?.client_id, b.client_id);

    // Client a naming b's key, by id or prefix, revokes nothing.
    assert_eq!(store.revoke_api_keys(a.client_id, &kb2.key_id.to_string(), ts(100)).await?, 0);
    assert_eq!(store.revoke_api_keys(a.client_id, "lv_other", ts(100)).await?, 0);
    assert!(store.find_api_key(&kb2.digest).await?.is_some());
    assert_eq!(store.list_api_keys(b.client_id).await?, vec![kb, kb2]);
    assert_eq!(store.list_api_keys(a.client_id).await?, vec![ApiKeyRecord { revoked_at: Some(ts(100)), ..ka }]);
    Ok(())
}

async fn duplicate_api_key_digest_is_rejected(store: DynStore) -> TestResult {
    let a = client("a");
    let k = api_key(a.client_id, Scope::Read, "lv_1111", 1);
    store.insert_client(&a, std::slice::from_ref(&k)).await?;

    let same_digest = ApiKeyRecord { digest: k.digest.clone(), ..api_key(a.client_id, Scope::Write, "lv_2222", 2) };
    assert!(store.insert_api_key(&same_digest).await.is_err(), "a duplicate digest must be an error");

    // insert_client is atomic: a duplicate digest among its keys leaves no client and no key behind.
    let b = client("b");
    let good = api_key(b.client_id, Scope::Read, "lv_3333", 3);
    let dup = ApiKeyRecord { digest: k.digest.clone(), ..api_key(b.client_id, Scope::Write, "lv_4444", 4) };
    assert!(store.insert_client(&b, &[good.clone(), dup]).await.is_err());
    assert_eq!(store.get_client(b.client_id).await?, None);
    assert_eq!(store.find_api_key(&good.digest).await?, None);

    // The original key is still the one found.
    let found = store.find_api_key(&k.digest).await?.ok_or("original key lost")?;
    assert_eq!((found.key_id, found.client_id), (k.key_id, a.client_id));
    assert_eq!(store.list_api_keys(a.client_id).await?, vec![k]);
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Connections
// ------------------------------------------------------------------------------------------------

async fn insert_connection_and_natural_key_taken(store: DynStore) -> TestResult {
    let s = setup(&store).await?;
    assert_eq!(store.count_connections().await?, 0);
    let r = connection(s.client, 1, "user-1", "coinbase", Scope::Write);
    assert_eq!(store.insert_connection(&r, None).await?, InsertOutcome::Inserted);
    assert_eq!(store.count_connections().await?, 1);

    // Same natural key, another tokenId (and other contents): refused, the first row is untouched.
    let mut rival = connection(s.client, 1, "user-1", "coinbase", Scope::Write);
    rival.account_id = Some("rival".to_owned());
    assert_eq!(store.insert_connection(&rival, None).await?, InsertOutcome::NaturalKeyTaken);
    assert_eq!(store.get_connection(rival.token_id).await?, None);
    assert_eq!(store.get_connection(r.token_id).await?, Some(r.clone()));
    assert_eq!(store.find_connection_by_natural_key(&natural_key(&r)?).await?, Some(r.clone()));
    assert_eq!(store.count_connections().await?, 1);
    assert!(!store.is_token_retired(rival.token_id).await?);
    // The rival's tokenId is still free to use for another natural key.
    let elsewhere = ConnectionRecord { user_id: "user-2".to_owned(), ..rival };
    assert_eq!(store.insert_connection(&elsewhere, None).await?, InsertOutcome::Inserted);
    assert_eq!(store.count_connections().await?, 2);
    assert_eq!(store.get_connection(elsewhere.token_id).await?, Some(elsewhere));
    Ok(())
}

async fn natural_key_lookup_distinguishes_every_component(store: DynStore) -> TestResult {
    let s = setup(&store).await?;
    let other_client = client("other");
    store.insert_client(&other_client, &[]).await?;

    let base = connection(s.client, 1, "user-1", "coinbase", Scope::Read);
    let variants = [
        connection(other_client.client_id, 1, "user-1", "coinbase", Scope::Read),
        connection(s.client, 1, "user-2", "coinbase", Scope::Read),
        connection(s.client, 1, "user-1", "kraken", Scope::Read),
        connection(s.client, 1, "user-1", "coinbase", Scope::Write),
        // Case matters: user ids and integration names are compared exactly.
        connection(s.client, 1, "USER-1", "coinbase", Scope::Read),
        connection(s.client, 1, "user-1", "Coinbase", Scope::Read),
    ];

    assert_eq!(store.insert_connection(&base, None).await?, InsertOutcome::Inserted);
    for v in &variants {
        assert_eq!(store.find_connection_by_natural_key(&natural_key(v)?).await?, None, "{v:?} matched the base row");
    }
    for v in &variants {
        assert_eq!(store.insert_connection(v, None).await?, InsertOutcome::Inserted, "{v:?} collided");
    }
    assert_eq!(store.count_connections().await?, 1 + variants.len() as u64);
    for r in std::iter::once(&base).chain(&variants) {
        assert_eq!(store.find_connection_by_natural_key(&natural_key(r)?).await?.as_ref(), Some(r));
    }
    Ok(())
}

async fn get_connection_round_trips_every_field(store: DynStore) -> TestResult {
    let s = setup(&store).await?;
    assert!(store.insert_key_version(&key_version(2), true).await?);

    // Every optional field set, every value distinct, odd sizes and unicode.
    let mut full = connection(s.client, 2, "ユーザー 1 ✓", "binanceInternationalDirect", Scope::Write);
    full.status = ConnectionStatus::ReauthRequired;
    full.credentials = random_bytes(517);
    full.wrapped_data_key = random_bytes(61);
    full.data_key_generation = 9;
    full.data_key_uses = 1 << 40;
    full.refresh_count = 123_456_789_012;
    full.version = 42;
    // Before 1970 and far ahead, still at millisecond precision.
    full.last_refreshed_at = Some(datetime!(1969-12-31 23:59:59.999 UTC));
    full.refresh_expires_at = Some(datetime!(2199-01-01 00:00:00.001 UTC));
    full.account_name = Some(String::new());

    // Every optional field empty.
    let mut sparse = connection(s.client, 1, "u", "x", Scope::Read);
    sparse.account_id = None;
    sparse.account_name = None;
    sparse.access_expires_at = None;
    sparse.refresh_expires_at = None;
    sparse.last_refreshed_at = None;
    sparse.data_key_generation = 0;
    sparse.data_key_uses = 0;
    sparse.refresh_count = 0;
    sparse.version = 0;
    sparse.credentials = vec![0];

    for r in [&full, &sparse] {
        assert_eq!(store.insert_connection(r, None).await?, InsertOutcome::Inserted);
    }
    for r in [&full, &sparse] {
        assert_eq!(store.get_connection(r.token_id).await?.as_ref(), Some(r));
        assert_eq!(store.find_connection_by_natural_key(&natural_key(r)?).await?.as_ref(), Some(r));
        // The status read returns the same values for its fields.
        let summary = ConnectionSummary::from(r);
        assert_eq!(store.get_connection_summary(r.token_id).await?, Some(summary));
    }
    assert_eq!(store.get_connection(TokenId::new_random()).await?, None);
    assert_eq!(store.get_connection_summary(TokenId::new_random()).await?, None);
    Ok(())
}

async fn update_credentials_is_compare_and_set(store: DynStore) -> TestResult {
    let s = setup(&store).await?;
    assert!(store.insert_key_version(&key_version(2), false).await?);
    let r = connection(s.client, 1, "user-1", "coinbase", Scope::Read);
    let bystander = connection(s.client, 1, "user-2", "coinbase", Scope::Read);
    assert_eq!(store.insert_connection(&r, None).await?, InsertOutcome::Inserted);
    assert_eq!(store.insert_connection(&bystander, None).await?, InsertOutcome::Inserted);

    // Wrong expected version (behind or ahead): refused, nothing written.
    for wrong in [r.version - 1, r.version + 1] {
        let u = CredentialsUpdate { expected_version: wrong, ..credentials_update(&r, None) };
        assert!(!store.update_credentials(&u).await?);
        assert_eq!(store.get_connection(r.token_id).await?.as_ref(), Some(&r));
    }
    // Unknown tokenId: refused.
    let unknown = CredentialsUpdate { token_id: TokenId::new_random(), ..credentials_update(&r, None) };
    assert!(!store.update_credentials(&unknown).await?);

    // Right version without rekey: every field applied, the data key untouched, version + 1.
    let u1 = credentials_update(&r, None);
    assert!(store.update_credentials(&u1).await?);
    let after1 = applied(&r, &u1);
    assert_eq!(after1.version, r.version + 1);
    assert_eq!((after1.key_version, &after1.wrapped_data_key, after1.data_key_generation), (1, &r.wrapped_data_key, 3));
    assert_eq!(store.get_connection(r.token_id).await?.as_ref(), Some(&after1));

    // The same update again is now stale.
    assert!(!store.update_credentials(&u1).await?);
    assert_eq!(store.get_connection(r.token_id).await?.as_ref(), Some(&after1));

    // With rekey: the new data key, its version and generation are applied too.
    let rekey = Rekey { key_version: 2, wrapped_data_key: random_bytes(64), data_key_generation: 4 };
    let mut u2 = credentials_update(&after1, Some(rekey));
    u2.status = ConnectionStatus::Active;
    u2.account_name = Some("renamed".to_owned());
    u2.access_expires_at = Some(ts(9_999));
    assert!(store.update_credentials(&u2).await?);
    let after2 = applied(&after1, &u2);
    assert_eq!((after2.key_version, after2.data_key_generation, after2.version), (2, 4, r.version + 2));
    assert_eq!(store.get_connection(r.token_id).await?.as_ref(), Some(&after2));

    // The other row never changed.
    assert_eq!(store.get_connection(bystander.token_id).await?.as_ref(), Some(&bystander));
    Ok(())
}

/// The restore path: deletions from the ledger re-applied to a database that predates them.
async fn apply_deletions_deletes_and_retires_idempotently(store: DynStore) -> TestResult {
    let s = setup(&store).await?;
    let other = client("other");
    store.insert_client(&other, &[]).await?;
    let gone = connection(s.client, 1, "user-1", "coinbase", Scope::Write);
    let keep = connection(s.client, 1, "user-2", "coinbase", Scope::Write);
    let others = connection(other.client_id, 1, "user-1", "coinbase", Scope::Write);
    for r in [&gone, &keep, &others] {
        assert_eq!(store.insert_connection(r, None).await?, InsertOutcome::Inserted);
    }
    let never = TokenId::new_random();
    let batch = [
        DeletionRecord { token_id: gone.token_id, client_id: s.client, deleted_at: ts(1) },
        // An entry naming another client's connection under the wrong client deletes nothing.
        DeletionRecord { token_id: others.token_id, client_id: s.client, deleted_at: ts(2) },
        DeletionRecord { token_id: never, client_id: s.client, deleted_at: ts(3) },
    ];
    let pending = store.count_pending_outbox().await?;
    assert_eq!(store.apply_deletions(&batch).await?, AppliedDeletions { deleted: 1, already_absent: 2 });
    assert_eq!(store.get_connection(gone.token_id).await?, None);
    assert_eq!(store.get_connection(keep.token_id).await?.as_ref(), Some(&keep));
    assert_eq!(store.get_connection(others.token_id).await?.as_ref(), Some(&others));
    assert!(store.is_token_retired(gone.token_id).await?);
    assert!(store.is_token_retired(never).await?, "a deletion the backup never saw still retires its tokenId");
    assert_eq!(store.count_pending_outbox().await?, pending, "the deletion was announced when it was made");

    // Again: nothing left to delete, nothing changes.
    assert_eq!(store.apply_deletions(&batch).await?, AppliedDeletions { deleted: 0, already_absent: 3 });
    assert_eq!(store.count_connections().await?, 2);
    assert_eq!(store.apply_deletions(&[]).await?, AppliedDeletions::default());

    // A re-applied deletion's tokenId is never issued again.
    let again =
        ConnectionRecord { token_id: gone.token_id, ..connection(s.client, 1, "user-9", "coinbase", Scope::Read) };
    assert_eq!(store.insert_connection(&again, None).await?, InsertOutcome::TokenIdRetired);
    let reissued = ConnectionRecord { token_id: never, ..connection(s.client, 1, "user-8", "coinbase", Scope::Read) };
    assert_eq!(store.insert_connection(&reissued, None).await?, InsertOutcome::TokenIdRetired);
    Ok(())
}

async fn delete_connection_only_for_owner_and_retires_token_id(store: DynStore) -> TestResult {
    let s = setup(&store).await?;
    let other = client("other");
    store.insert_client(&other, &[]).await?;
    let r = connection(s.client, 1, "user-1", "coinbase", Scope::Write);
    let keep = connection(s.client, 1, "user-2", "coinbase", Scope::Write);
    assert_eq!(store.insert_connection(&r, None).await?, InsertOutcome::Inserted);
    assert_eq!(store.insert_connection(&keep, None).await?, InsertOutcome::Inserted);
    assert!(!store.is_token_retired(r.token_id).await?);

    // Another client cannot delete it: nothing happens.
    assert!(!store.delete_connection(other.client_id, r.token_id, None).await?);
    assert!(!store.delete_connection(ClientId::new_random(), r.token_id, None).await?);
    assert_eq!(store.get_connection(r.token_id).await?.as_ref(), Some(&r));
    assert!(!store.is_token_retired(r.token_id).await?);
    assert_eq!(store.count_connections().await?, 2);

    // An unknown tokenId deletes (and retires) nothing.
    let never = TokenId::new_random();
    assert!(!store.delete_connection(s.client, never, None).await?);
    assert!(!store.is_token_retired(never).await?);

    // The owner can.
    assert!(store.delete_connection(s.client, r.token_id, None).await?);
    assert_eq!(store.get_connection(r.token_id).await?, None);
    assert_eq!(store.find_connection_by_natural_key(&natural_key(&r)?).await?, None);
    assert!(store.is_token_retired(r.token_id).await?);
    assert_eq!(store.count_connections().await?, 1);
    assert_eq!(store.get_connection(keep.token_id).await?.as_ref(), Some(&keep));
    assert!(!store.delete_connection(s.client, r.token_id, None).await?, "deleting twice");
    assert_eq!(store.count_connections_by_key_version().await?, vec![(1, 1)]);

    // The retired tokenId can never come back, whatever its natural key, and the refusal wraps nothing.
    let wraps = wrap_count(&store, 1).await?;
    let again =
        ConnectionRecord { user_id: "user-3".to_owned(), ..connection(s.client, 1, "x", "coinbase", Scope::Read) };
    let again = ConnectionRecord { token_id: r.token_id, ..again };
    assert_eq!(store.insert_connection(&again, None).await?, InsertOutcome::TokenIdRetired);
    let same_key = ConnectionRecord { token_id: r.token_id, ..r.clone() };
    assert_eq!(store.insert_connection(&same_key, None).await?, InsertOutcome::TokenIdRetired);
    assert_eq!(store.get_connection(r.token_id).await?, None);
    assert_eq!(store.count_connections().await?, 1);
    assert_eq!(wrap_count(&store, 1).await?, wraps);

    // The natural key itself is free again, under a new tokenId.
    let successor = ConnectionRecord { token_id: TokenId::new_random(), ..r.clone() };
    assert_eq!(store.insert_connection(&successor, None).await?, InsertOutcome::Inserted);
    assert_eq!(store.find_connection_by_natural_key(&natural_key(&r)?).await?, Some(successor));
    assert!(store.is_token_retired(r.token_id).await?);
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Concurrency
// ------------------------------------------------------------------------------------------------

async fn concurrent_inserts_same_natural_key_exactly_one_wins(store: DynStore) -> TestResult {
    let s = setup(&store).await?;
    let records: Vec<ConnectionRecord> =
        (0..RACERS).map(|_| connection(s.client, 1, "racer", "coinbase", Scope::Write)).collect();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(RACERS));
    let mut tasks = JoinSet::new();
    for r in records.clone() {
        let (store, barrier) = (store.clone(), barrier.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            store.insert_connection(&r, None).await.map(|outcome| (r.token_id, outcome))
        });
    }
    let mut winners = Vec::new();
    let mut taken = 0;
    while let Some(result) = tasks.join_next().await {
        match result?? {
            (token_id, InsertOutcome::Inserted) => winners.push(token_id),
            (_, InsertOutcome::NaturalKeyTaken) => taken += 1,
            (token_id, InsertOutcome::TokenIdRetired) => panic!("{token_id} reported retired"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one insert must win: {winners:?}");
    assert_eq!(taken, RACERS - 1);
    let winner = winners.first().ok_or("no winner")?;
    assert_eq!(store.count_connections().await?, 1);
    let stored = store.find_connection_by_natural_key(&natural_key(&records[0])?).await?.ok_or("no row")?;
    assert_eq!(&stored.token_id, winner);
    assert_eq!(Some(&stored), records.iter().find(|r| &r.token_id == winner));
    assert_eq!(wrap_count(&store, 1).await?, 1, "only the winner wrapped a data key");
    Ok(())
}

async fn concurrent_updates_same_expected_version_exactly_one_wins(store: DynStore) -> TestResult {
    let s = setup(&store).await?;
    assert!(store.insert_key_version(&key_version(2), false).await?);
    let r = connection(s.client, 1, "racer", "coinbase", Scope::Write);
    assert_eq!(store.insert_connection(&r, None).await?, InsertOutcome::Inserted);

    // Half of the racers also rekey, so the winner's wrap is counted exactly once.
    let updates: Vec<CredentialsUpdate> = (0..RACERS)
        .map(|i| {
            let rekey = (i % 2 == 0).then(|| Rekey {
                key_version: 2,
                wrapped_data_key: random_bytes(64),
                data_key_generation: 4,
            });
            credentials_update(&r, rekey)
        })
        .collect();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(RACERS));
    let mut tasks = JoinSet::new();
    for (i, u) in updates.iter().cloned().enumerate() {
        let (store, barrier) = (store.clone(), barrier.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            store.update_credentials(&u).await.map(|won| (i, won))
        });
    }
    let mut winners = Vec::new();
    while let Some(result) = tasks.join_next().await {
        let (i, won) = result??;
        if won {
            winners.push(i);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one compare-and-set must win: {winners:?}");
    let winner = updates.get(winners[0]).ok_or("no winner")?;
    let stored = store.get_connection(r.token_id).await?.ok_or("row lost")?;
    assert_eq!(stored, applied(&r, winner));
    assert_eq!(stored.version, r.version + 1);
    let rekeyed = u64::from(winner.rekey.is_some());
    assert_eq!((wrap_count(&store, 1).await?, wrap_count(&store, 2).await?), (1, rekeyed));
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// SQLite: deleted secrets do not survive in the files
// ------------------------------------------------------------------------------------------------

fn file_bytes(path: &Path) -> Result<Vec<u8>, Box<dyn Error + Send + Sync>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display()).into()),
    }
}

/// The files (database, WAL, shared memory) that contain `needle`, by suffix.
fn files_containing(db: &Path, needle: &[u8]) -> Result<Vec<&'static str>, Box<dyn Error + Send + Sync>> {
    let mut found = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let mut path = db.as_os_str().to_owned();
        path.push(suffix);
        let bytes = file_bytes(Path::new(&path))?;
        if bytes.windows(needle.len()).any(|w| w == needle) {
            found.push(if suffix.is_empty() { "db" } else { suffix });
        }
    }
    Ok(found)
}

async fn delete_scrubs_credentials_and_data_key_from_sqlite_files() -> TestResult {
    let fresh = fresh_store(Backend::Sqlite).await?;
    let store = fresh.store.clone();
    let db = fresh.dir.path().join("linkvault.db");
    assert_eq!(Path::new(&fresh.url), db.as_path(), "fresh_store's SQLite file moved");
    let s = setup(&store).await?;

    let doomed = connection(s.client, 1, "user-doomed", "coinbase", Scope::Write);
    let survivor = connection(s.client, 1, "user-survivor", "coinbase", Scope::Write);
    assert_eq!(store.insert_connection(&doomed, None).await?, InsertOutcome::Inserted);
    assert_eq!(store.insert_connection(&survivor, None).await?, InsertOutcome::Inserted);
    // The doomed row's earlier credentials, replaced before the deletion, must not survive it either.
    let first_credentials = doomed.credentials.clone();
    let update = credentials_update(&doomed, None);
    assert!(store.update_credentials(&update).await?);
    let doomed = applied(&doomed, &update);
    assert_eq!(doomed.credentials.len(), 80);

    // Sanity: the values are findable in the files before deletion, so the scan below proves something.
    let secrets =
        [("credentials", doomed.credentials.as_slice()), ("wrapped_data_key", doomed.wrapped_data_key.as_slice())];
    for (what, bytes) in secrets {
        assert!(!files_containing(&db, bytes)?.is_empty(), "{what} is not in the database files before deletion");
    }
    assert!(!files_containing(&db, &first_credentials)?.is_empty());

    assert!(store.delete_connection(s.client, doomed.token_id, None).await?);

    for (what, bytes) in secrets.into_iter().chain([("replaced credentials", first_credentials.as_slice())]) {
        let found = files_containing(&db, bytes)?;
        assert!(found.is_empty(), "the deleted row's {what} survives in {found:?}");
    }
    // The surviving row is still there, so the files were scanned where the data lives.
    assert_eq!(store.get_connection(survivor.token_id).await?.as_ref(), Some(&survivor));
    assert!(!files_containing(&db, &survivor.credentials)?.is_empty(), "the survivor's credentials vanished");
    assert!(!files_containing(&db, &survivor.wrapped_data_key)?.is_empty());
    drop(store);
    drop(fresh);
    Ok(())
}

/// A deletion re-applied after a restore leaves the row's bytes in no SQLite file either.
async fn reapplied_deletion_scrubs_sqlite_files() -> TestResult {
    let fresh = fresh_store(Backend::Sqlite).await?;
    let store = fresh.store.clone();
    let db = fresh.dir.path().join("linkvault.db");
    let s = setup(&store).await?;
    let doomed = connection(s.client, 1, "user-doomed", "coinbase", Scope::Write);
    let survivor = connection(s.client, 1, "user-survivor", "coinbase", Scope::Write);
    assert_eq!(store.insert_connection(&doomed, None).await?, InsertOutcome::Inserted);
    assert_eq!(store.insert_connection(&survivor, None).await?, InsertOutcome::Inserted);
    for bytes in [&doomed.credentials, &doomed.wrapped_data_key] {
        assert!(!files_containing(&db, bytes)?.is_empty(), "not in the files before the deletion");
    }
    let deletion = DeletionRecord { token_id: doomed.token_id, client_id: s.client, deleted_at: ts(0) };
    assert_eq!(store.apply_deletions(&[deletion]).await?, AppliedDeletions { deleted: 1, already_absent: 0 });
    for (what, bytes) in [("credentials", &doomed.credentials), ("wrapped_data_key", &doomed.wrapped_data_key)] {
        let found = files_containing(&db, bytes)?;
        assert!(found.is_empty(), "the re-deleted row's {what} survives in {found:?}");
    }
    assert!(!files_containing(&db, &survivor.credentials)?.is_empty(), "the survivor's credentials vanished");
    drop(store);
    drop(fresh);
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Refresh scheduling and the outbox
// ------------------------------------------------------------------------------------------------

const LEASE: std::time::Duration = std::time::Duration::from_secs(60);

fn event(client_id: ClientId, event_type: &str) -> OutboxEvent {
    OutboxEvent {
        id: Uuid::new_v4(),
        client_id,
        event_type: event_type.to_owned(),
        payload: format!("{{\"type\":\"{event_type}\"}}"),
        created_at: ts(11),
    }
}

/// A stored connection due at `ts(due_offset_ms)`.
async fn due_connection(
    store: &DynStore,
    s: &Setup,
    user: &str,
    due_offset_ms: i64,
) -> Result<ConnectionRecord, Box<dyn Error + Send + Sync>> {
    let mut r = connection(s.client, 1, user, "coinbase", Scope::Read);
    r.refresh = RefreshState { next_refresh_at: Some(ts(due_offset_ms)), ..RefreshState::default() };
    assert_eq!(store.insert_connection(&r, None).await?, InsertOutcome::Inserted);
    Ok(r)
}

async fn claim_due_takes_due_active_free_rows_oldest_first(store: DynStore) -> TestResult {
    let s = setup(&store).await?;
    let later = due_connection(&store, &s, "later", -1_000).await?;
    let first = due_connection(&store, &s, "first", -3_000).await?;
    let _future = due_connection(&store, &s, "future", 60_000).await?;
    let inactive = due_connection(&store, &s, "inactive", -5_000).await?;
    let mut u = credentials_update(&inactive, None);
    u.next_refresh_at = Some(ts(-5_000));
    assert!(store.update_credentials(&u).await?, "now reauthRequired");
    assert_eq!(store.count_due_connections(ts(0)).await?, 2, "reauthRequired rows are not due");

    let one = store.claim_due_connections(ts(0), "worker-a", LEASE, 1).await?;
    assert_eq!(one.len(), 1, "limit respected");
    assert_eq!(one[0].record.token_id, first.token_id, "oldest due first");
    assert_eq!(one[0].due_at, ts(-3_000));
    assert!(!one[0].took_over_expired_lease);
    let claimed = &one[0].record;
    assert_eq!(claimed.version, first.version + 1, "claiming bumps the fencing version");
    assert_eq!(claimed.refresh.lease_owner.as_deref(), Some("worker-a"));
    assert!(claimed.refresh.lease_until.is_some());
    if store.backend() == "sqlite" {
        assert_eq!(claimed.refresh.lease_until, Some(ts(60_000)), "SQLite leases run on the caller's clock");
    }
    assert_eq!(store.get_connection(first.token_id).await?.as_ref(), Some(claimed));

    let rest = store.claim_due_connections(ts(0), "worker-b", LEASE, 10).await?;
    let ids: Vec<TokenId> = rest.iter().map(|c| c.record.token_id).collect();
    assert_eq!(ids, vec![later.token_id], "leased, future and inactive rows are not claimed");
    assert!(store.claim_due_connections(ts(0), "worker-c", LEASE, 10).await?.is_empty());
    // On-demand claims respect the lease too.
    assert!(store.claim_connection(first.token_id, ts(0), "worker-c", LEASE).await?.is_none());
    assert!(store.claim_connection(inactive.token_id, ts(0), "worker-c", LEASE).await?.is_none());
    let future = store.claim_connection(_future.token_id, ts(0), "worker-c", LEASE).await?;
    assert_eq!(future.map(|r| (r.version, r.refresh.lease_owner)), Some((2, Some("worker-c".to_owned()))));
    assert!(store.claim_connection(TokenId::new_random(), ts(0), "worker-c", LEASE).await?.is_none());
    Ok(())
}

async fn expired_leases_are_reclaimed_unless_a_grant_was_in_flight(store: DynStore) -> TestResult {
    let s = setup(&store).await?;
    let idle = due_connection(&store, &s, "idle", -2_000).await?;
    let crashed = due_connection(&store, &s, "crashed", -1_000).await?;
    let short = std::time::Duration::from_millis(150);
    let claimed = store.claim_due_connections(ts(0), "dead-worker", short, 10).await?;
    assert_eq!(claimed.len(), 2);
    let crashed_claim = claimed.iter().find(|c| c.record.token_id == crashed.token_id).ok_or("claimed")?;
    assert!(
        store
            .mark_grant_in_flight(
                crashed.token_id,
                crashed_claim.record.version,
                "dead-worker",
                ts(0),
                std::time::Duration::ZERO
            )
            .await?
    );
    assert!(store.expired_leases(ts(0), 10).await?.is_empty() || store.backend() == "postgres");
    // SQLite compares leases with the `now` passed in, PostgreSQL with its own clock: move both past the lease.
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    let later = ts(1_000);

    let expired = store.expired_leases(later, 10).await?;
    let mut expired_ids: Vec<TokenId> = expired.iter().map(|r| r.token_id).collect();
    expired_ids.sort();
    let mut want = vec![idle.token_id, crashed.token_id];
    want.sort();
    assert_eq!(expired_ids, want);

    // The idle lease is simply reclaimable, and the claim says it took over an expired lease.
    let reclaimed = store.claim_due_connections(later, "worker-b", LEASE, 10).await?;
    assert_eq!(reclaimed.len(), 1, "a row whose grant was in flight is left to recovery");
    assert_eq!(reclaimed[0].record.token_id, idle.token_id);
    assert!(reclaimed[0].took_over_expired_lease);
    assert!(store.claim_connection(crashed.token_id, later, "worker-b", LEASE).await?.is_none());

    // Recovery takes the crashed row over with a compare-and-set, keeping the flag.
    let row = store.get_connection(crashed.token_id).await?.ok_or("row")?;
    assert!(row.refresh.grant_in_flight);
    assert!(
        store.take_over_expired_lease(crashed.token_id, row.version + 1, later, "recoverer", LEASE).await?.is_none()
    );
    let taken = store
        .take_over_expired_lease(crashed.token_id, row.version, later, "recoverer", LEASE)
        .await?
        .ok_or("taken")?;
    assert_eq!(taken.version, row.version + 1);
    assert!(taken.refresh.grant_in_flight, "a second crash is still recognised");
    assert_eq!(taken.refresh.lease_owner.as_deref(), Some("recoverer"));
    assert!(
        store.take_over_expired_lease(crashed.token_id, taken.version, later, "other", LEASE).await?.is_none(),
        "a live lease is not taken over"
    );
    Ok(())
}

async fn grant_in_flight_requires_version_owner_and_lease_time(store: DynStore) -> TestResult {
    let s = setup(&store).await?;
    let r = due_connection(&store, &s, "alice", -1).await?;
    let claimed = store.claim_due_connections(ts(0), "me", LEASE, 1).await?.pop().ok_or("claimed")?.record;
    let ten = std::time::Duration::from_secs(10);
    assert!(!store.mark_grant_in_flight(r.token_id, claimed.version, "someone-else", ts(0), ten).await?);
    assert!(!store.mark_grant_in_flight(r.token_id, claimed.version - 1, "me", ts(0), ten).await?);
    assert!(
        !store
            .mark_grant_in_flight(r.token_id, claimed.version, "me", ts(0), std::time::Duration::from_secs(120))
            .await?,
        "a lease that does not outlive the HTTP worst case sends nothing"
    );
    assert!(!store.get_connection(r.token_id).await?.ok_or("row")?.refresh.grant_in_flight);
    assert!(store.mark_grant_in_flight(r.token_id, claimed.version, "me", ts(0), ten).await?);
    let row = store.get_connection(r.token_id).await?.ok_or("row")?;
    assert!(row.refresh.grant_in_flight);
    assert_eq!(row.version, claimed.version, "marking does not bump the version");
    Ok(())
}

async fn complete_refresh_is_compare_and_set_on_version_and_owner(store: DynStore) -> TestResult {
    let s = setup(&store).await?;
    let r = due_connection(&store, &s, "alice", -1).await?;
    let claimed = store.claim_due_connections(ts(0), "me", LEASE, 1).await?.pop().ok_or("claimed")?.record;
    assert!(store.mark_grant_in_flight(r.token_id, claimed.version, "me", ts(0), std::time::Duration::ZERO).await?);
    let mut u = credentials_update(&claimed, None);
    u.status = ConnectionStatus::Active;
    u.reauth_warned_at = Some(ts(12));
    u.event = Some(event(s.client, "connection.recovered"));
    assert!(!store.complete_refresh(&u, "not-the-owner").await?);
    let stale = CredentialsUpdate { expected_version: r.version, ..u.clone() };
    assert!(!store.complete_refresh(&stale, "me").await?);
    assert_eq!(store.count_pending_outbox().await?, 0, "a lost compare-and-set writes no event");
    assert!(store.complete_refresh(&u, "me").await?);
    let after = store.get_connection(r.token_id).await?.ok_or("row")?;
    let mut expected = applied(&claimed, &u);
    expected.refresh.last_refreshed_by = Some("me".to_owned());
    assert_eq!(after, expected, "the lease owner is recorded as the refresher");
    assert!(
        !after.refresh.grant_in_flight && after.refresh.lease_owner.is_none() && after.refresh.lease_until.is_none()
    );
    assert_eq!(store.pending_outbox_events(10).await?, vec![u.event.clone().ok_or("event")?]);
    assert!(!store.complete_refresh(&u, "me").await?, "the same write-back twice loses");
    Ok(())
}

async fn release_lease_and_reauth_mark_write_their_event_atomically(store: DynStore) -> TestResult {
    let s = setup(&store).await?;
    let r = due_connection(&store, &s, "alice", -1).await?;
    let claimed = store.claim_due_connections(ts(0), "me", LEASE, 1).await?.pop().ok_or("claimed")?.record;
    assert!(store.mark_grant_in_flight(r.token_id, claimed.version, "me", ts(0), std::time::Duration::ZERO).await?);
    let soon = event(s.client, "connection.reauthRequiredSoon");
    let release = LeaseRelease {
        token_id: r.token_id,
        expected_version: claimed.version,
        owner: "me".to_owned(),
        next_refresh_at: ts(5_000),
        refresh_failures: 3,
        last_error: Some("token endpoint answered HTTP 503".to_owned()),
        reauth_warned_at: Some(ts(1)),
        event: Some(soon.clone()),
    };
    assert!(!store.release_lease(&LeaseRelease { owner: "other".to_owned(), ..release.clone() }).await?);
    assert!(store.release_lease(&release).await?);
    let row = store.get_connection(r.token_id).await?.ok_or("row")?;
    assert_eq!(
        row.refresh,
        RefreshState {
            next_refresh_at: Some(ts(5_000)),
            lease_owner: None,
            lease_until: None,
            last_refreshed_by: None,
            grant_in_flight: false,
            refresh_failures: 3,
            last_error: Some("token endpoint answered HTTP 503".to_owned()),
            reauth_warned_at: Some(ts(1)),
        }
    );
    assert_eq!(row.version, claimed.version, "a release does not bump the version");
    assert!(!store.release_lease(&release).await?, "released once");
    assert_eq!(store.pending_outbox_events(10).await?, vec![soon.clone()]);

    let gone = event(s.client, "connection.reauthRequired");
    let mark = ReauthMark {
        token_id: r.token_id,
        expected_version: row.version - 1,
        owner: None,
        last_error: Some("invalid_grant".to_owned()),
        updated_at: ts(20),
        event: gone.clone(),
    };
    assert!(!store.mark_reauth_required(&mark).await?, "stale version");
    assert!(
        !store
            .mark_reauth_required(&ReauthMark {
                expected_version: row.version,
                owner: Some("x".into()),
                ..mark.clone()
            })
            .await?
    );
    assert_eq!(store.count_pending_outbox().await?, 1);
    assert!(store.mark_reauth_required(&ReauthMark { expected_version: row.version, ..mark.clone() }).await?);
    let row = store.get_connection(r.token_id).await?.ok_or("row")?;
    assert_eq!(row.status, ConnectionStatus::ReauthRequired);
    assert_eq!(row.refresh.next_refresh_at, None);
    assert_eq!(row.refresh.last_error.as_deref(), Some("invalid_grant"));
    assert_eq!(row.updated_at, ts(20));
    assert_eq!(store.pending_outbox_events(10).await?.len(), 2);
    assert_eq!(store.count_due_connections(ts(1_000_000)).await?, 0);
    assert!(store.claim_due_connections(ts(1_000_000), "me", LEASE, 10).await?.is_empty());
    Ok(())
}

/// Retention: events delivered or given up before the cutoff are deleted; later finished ones and pending
/// ones (whatever their age) stay.
async fn finished_outbox_events_are_purged_after_their_retention(store: DynStore) -> TestResult {
    let s = setup(&store).await?;
    let mut ids = Vec::new();
    for (i, user) in ["old-delivered", "old-given-up", "new-delivered", "pending"].iter().enumerate() {
        let r = connection(s.client, 1, user, "coinbase", Scope::Read);
        let e = event(s.client, "connection.created");
        assert_eq!(store.insert_connection(&r, Some(&e)).await?, InsertOutcome::Inserted, "{i}");
        ids.push(e.id);
    }
    let claimed = store.claim_outbox_deliveries(ts(100), ts(60_000), 10).await?;
    assert_eq!(claimed.len(), 4);
    store.finish_outbox_attempt(ids[0], &DeliveryOutcome::Delivered { at: ts(1_000) }).await?;
    store.finish_outbox_attempt(ids[1], &DeliveryOutcome::GiveUp { at: ts(2_000), error: "gone".into() }).await?;
    store.finish_outbox_attempt(ids[2], &DeliveryOutcome::Delivered { at: ts(5_000) }).await?;
    store
        .finish_outbox_attempt(ids[3], &DeliveryOutcome::Retry { next_attempt_at: ts(9_000), error: "503".into() })
        .await?;
    assert_eq!(store.purge_finished_outbox(ts(1_000)).await?, 0, "the cutoff itself is kept");
    assert_eq!(store.purge_finished_outbox(ts(3_000)).await?, 2);
    assert_eq!(store.purge_finished_outbox(ts(3_000)).await?, 0, "a purge is idempotent");
    assert_eq!(store.pending_outbox_events(10).await?.into_iter().map(|e| e.id).collect::<Vec<_>>(), vec![ids[3]]);
    assert_eq!(
        store.purge_finished_outbox(ts(1_000_000)).await?,
        1,
        "the later delivered event, never the pending one"
    );
    assert_eq!(store.count_pending_outbox().await?, 1);
    Ok(())
}

async fn credential_writes_end_refresh_state_and_write_events(store: DynStore) -> TestResult {
    let s = setup(&store).await?;
    let mut r = connection(s.client, 1, "alice", "coinbase", Scope::Read);
    r.refresh = RefreshState { next_refresh_at: Some(ts(-1)), ..RefreshState::default() };
    let created = event(s.client, "connection.created");
    assert_eq!(store.insert_connection(&r, Some(&created)).await?, InsertOutcome::Inserted);
    // A refused insert writes no event.
    let rival = ConnectionRecord { token_id: TokenId::new_random(), ..r.clone() };
    assert_eq!(store.insert_connection(&rival, Some(&event(s.client, "x"))).await?, InsertOutcome::NaturalKeyTaken);
    assert_eq!(store.pending_outbox_events(10).await?, vec![created.clone()]);

    // Re-authentication while a refresh holds the lease with a grant in flight: the new credentials win and
    // the refresh state is reset.
    let claimed = store.claim_due_connections(ts(0), "worker", LEASE, 1).await?.pop().ok_or("claimed")?.record;
    assert!(store.mark_grant_in_flight(r.token_id, claimed.version, "worker", ts(0), std::time::Duration::ZERO).await?);
    let mut u = credentials_update(&claimed, None);
    u.status = ConnectionStatus::Active;
    u.event = Some(event(s.client, "connection.recovered"));
    assert!(store.update_credentials(&u).await?);
    let row = store.get_connection(r.token_id).await?.ok_or("row")?;
    assert_eq!(row, applied(&claimed, &u));
    assert_eq!(store.count_pending_outbox().await?, 2);

    let deleted = event(s.client, "connection.deleted");
    assert!(!store.delete_connection(ClientId::new_random(), r.token_id, Some(&deleted)).await?);
    assert_eq!(store.count_pending_outbox().await?, 2, "no row deleted, no event");
    assert!(store.delete_connection(s.client, r.token_id, Some(&deleted)).await?);
    let events: Vec<String> = store.pending_outbox_events(10).await?.into_iter().map(|e| e.event_type).collect();
    assert_eq!(events.len(), 3);
    assert!(events.contains(&"connection.deleted".to_owned()));
    Ok(())
}

async fn concurrent_claimers_never_share_a_row(store: DynStore) -> TestResult {
    let s = setup(&store).await?;
    const ROWS: usize = 60;
    for i in 0..ROWS {
        due_connection(&store, &s, &format!("user-{i}"), -(i as i64)).await?;
    }
    let mut tasks = JoinSet::new();
    for worker in 0..RACERS {
        let store = store.clone();
        tasks.spawn(async move {
            let mut mine = Vec::new();
            for _ in 0..ROWS {
                let batch = store.claim_due_connections(ts(0), &format!("worker-{worker}"), LEASE, 7).await?;
                if batch.is_empty() {
                    break;
                }
                mine.extend(batch.into_iter().map(|c| (c.record.token_id, c.record.refresh.lease_owner)));
            }
            Ok::<_, linkvault_storage::StorageError>(mine)
        });
    }
    let mut seen = BTreeSet::new();
    while let Some(result) = tasks.join_next().await {
        for (token_id, owner) in result?? {
            assert!(seen.insert(token_id), "{token_id} claimed twice");
            assert_eq!(store.get_connection(token_id).await?.ok_or("row")?.refresh.lease_owner, owner);
        }
    }
    assert_eq!(seen.len(), ROWS);
    Ok(())
}

async fn last_error_is_kept_short(store: DynStore) -> TestResult {
    let s = setup(&store).await?;
    let r = due_connection(&store, &s, "alice", -1).await?;
    let claimed = store.claim_due_connections(ts(0), "me", LEASE, 1).await?.pop().ok_or("claimed")?.record;
    let release = LeaseRelease {
        token_id: r.token_id,
        expected_version: claimed.version,
        owner: "me".to_owned(),
        next_refresh_at: ts(5),
        refresh_failures: 1,
        last_error: Some(format!("line\n{}", "x".repeat(1000))),
        reauth_warned_at: None,
        event: None,
    };
    assert!(store.release_lease(&release).await?);
    let kept = store.get_connection(r.token_id).await?.ok_or("row")?.refresh.last_error.ok_or("error")?;
    assert_eq!(kept.chars().count(), linkvault_storage::MAX_LAST_ERROR_CHARS);
    assert!(!kept.contains('\n'));
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Audit log
// ------------------------------------------------------------------------------------------------

fn audit_entry(at: OffsetDateTime, actor: &str) -> AuditEntry {
    AuditEntry {
        at,
        actor: actor.to_owned(),
        action: "connection.created".to_owned(),
        client_id: Some(ClientId::new_random().to_string()),
        token_id: Some(TokenId::new_random().to_string()),
        subject_id: None,
        detail: Some("integration=coinbase".to_owned()),
    }
}

/// A stand-in for the vault's HMAC: the MAC is the position followed by the previous MAC's first 8 bytes, so
/// each stored MAC shows which head its append saw. The tag is the position again.
fn test_seal() -> AuditSeal {
    Box::new(|seq: u64, prev: &[u8]| {
        let mut mac = seq.to_be_bytes().to_vec();
        mac.extend_from_slice(&prev[..prev.len().min(8)]);
        (mac, [b"tag".as_slice(), &seq.to_be_bytes()].concat())
    })
}

/// Reads the whole log through `audit_records` in pages of `page`, checking the chain `test_seal` built.
async fn audit_chain_of(store: &dyn Store, page: u32) -> Result<Vec<u64>, Box<dyn Error + Send + Sync>> {
    let mut seqs = Vec::new();
    let mut prev: Vec<u8> = Vec::new();
    loop {
        let batch = store.audit_records(seqs.last().copied().unwrap_or(0), None, page).await?;
        for r in &batch {
            assert_eq!(r.mac[..8], r.seq.to_be_bytes(), "record {} keeps its own position", r.seq);
            assert_eq!(r.mac[8..], prev[..prev.len().min(8)], "record {} was sealed on the previous head", r.seq);
            prev.clone_from(&r.mac);
            seqs.push(r.seq);
        }
        if batch.len() < page as usize {
            break;
        }
    }
    let head = store.audit_head().await?;
    assert_eq!(head.seq, seqs.last().copied().unwrap_or(0));
    assert_eq!(head.mac, prev, "the head keeps the last MAC");
    if head.seq > 0 {
        assert_eq!(head.tag, Some([b"tag".as_slice(), &head.seq.to_be_bytes()].concat()));
    }
    Ok(seqs)
}

async fn audit_appends_are_gapless_and_each_sees_the_previous_mac(store: DynStore) -> TestResult {
    let head = store.audit_head().await?;
    assert_eq!((head.seq, head.mac.is_empty(), head.tag), (0, true, None), "an empty log");
    let mut tasks = JoinSet::new();
    for racer in 0..RACERS {
        let store = store.clone();
        tasks.spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..5 {
                let entry = audit_entry(ts(i), &format!("racer-{racer}"));
                seqs.push(store.append_audit(&entry, test_seal()).await?);
            }
            Ok::<_, linkvault_storage::StorageError>(seqs)
        });
    }
    let mut returned = BTreeSet::new();
    while let Some(done) = tasks.join_next().await {
        for seq in done?? {
            assert!(returned.insert(seq), "position {seq} handed out twice");
        }
    }
    let total = (RACERS * 5) as u64;
    assert_eq!(returned, (1..=total).collect::<BTreeSet<_>>(), "gapless positions from 1");
    assert_eq!(audit_chain_of(store.as_ref(), 7).await?, (1..=total).collect::<Vec<_>>());
    Ok(())
}

async fn audit_records_page_in_order_and_filter_by_time(store: DynStore) -> TestResult {
    let mut written = Vec::new();
    for i in 0..5 {
        let entry = AuditEntry { subject_id: Some(Uuid::new_v4().to_string()), ..audit_entry(ts(i * 1000), "cli") };
        store.append_audit(&entry, test_seal()).await?;
        written.push(entry);
    }
    let all = store.audit_records(0, None, 100).await?;
    assert_eq!(all.iter().map(|r| r.entry.clone()).collect::<Vec<_>>(), written, "every field round-trips");
    let page = store.audit_records(2, None, 2).await?;
    assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![3, 4]);
    let recent = store.audit_records(0, Some(ts(3000)), 100).await?;
    assert_eq!(recent.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![4, 5], "at or after the time");
    assert!(store.audit_records(5, None, 100).await?.is_empty());
    Ok(())
}

/// Two instances (two pools) appending to one schema at once still build one gapless chain: the head row's
/// lock serialises them.
async fn audit_appends_from_two_instances_form_one_chain(base_url: String) -> TestResult {
    let schema = TestSchema::create(&base_url).await?;
    let outcome = async {
        let a: DynStore = std::sync::Arc::new(schema.store().await?);
        let b: DynStore = std::sync::Arc::new(schema.store().await?);
        a.migrate().await?;
        let mut tasks = JoinSet::new();
        for racer in 0..16 {
            let store = if racer % 2 == 0 { a.clone() } else { b.clone() };
            tasks.spawn(async move {
                for i in 0..10 {
                    store.append_audit(&audit_entry(ts(i), &format!("racer-{racer}")), test_seal()).await?;
                }
                Ok::<_, linkvault_storage::StorageError>(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        assert_eq!(audit_chain_of(b.as_ref(), 50).await?, (1..=160).collect::<Vec<_>>());
        TestResult::Ok(())
    }
    .await;
    let _ = std::thread::spawn(move || schema.drop_blocking()).join();
    outcome
}
