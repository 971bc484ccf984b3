//! The operator console's JSON under `/console/api` and its web app at `/console`: who may
//! read and act, what the answers to dead letters change (and that a refused one changes
//! nothing), the saga flows' order and timeline, the overview's buckets, and problem
//! documents for bad input.

use std::time::Duration;

use event_store::append::{NewEvent, StreamAppend, append_batch};
use serde_json::{Value, json};
use test_support::tokens;
use uuid::Uuid;

use crate::helpers::{TestApp, TestOptions, spawn_app_with};

/// Event store, read models and saga tables in the app's scratch database, as on the
/// platform (one database).
async fn spawn_console(auth: bool, console_dir: Option<std::path::PathBuf>) -> TestApp {
    let mut options = TestOptions::default();
    if auth {
        options.settings.http.auth = tokens::hs256_settings();
    }
    if let Some(dir) = console_dir {
        options.settings.console_dir = dir;
    }
    options.settings.console.saga_stuck_after = Duration::from_secs(60);
    let app = spawn_app_with(options).await;
    event_store::migrate(&app.db)
        .await
        .expect("event store migrates");
    saga::migrate(&app.db).await.expect("saga migrates");
    app
}

fn bearer(subject: &str, roles: &[&str]) -> String {
    format!("Bearer {}", tokens::writer_or(subject, roles))
}

/// A poison letter of `stock` for `sku` that parks it, and one parked behind it, read at
/// Kafka offsets `offset` and `offset + 1`.
async fn insert_parked_aggregate(app: &TestApp, sku: &str, offset: i64) -> (i64, i64) {
    let mut ids = Vec::new();
    for (offset, reason, sequence) in [(offset, "poison", 2_i64), (offset + 1, "parked", 3)] {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO read_model.dead_letters (projection, topic, kafka_partition, \
                 kafka_offset, payload, aggregate_type, aggregate_id, sequence, reason, error, \
                 attempts) \
             VALUES ('stock', 'keel.inventory', 0, $1, '\\x00'::bytea, 'inventory', $2, $3, \
                     $4, 'column value out of range', 1) \
             RETURNING id",
        )
        .bind(offset)
        .bind(sku)
        .bind(sequence)
        .bind(reason)
        .fetch_one(&app.db)
        .await
        .expect("insert dead letter");
        ids.push(id);
    }
    sqlx::query(
        "INSERT INTO read_model.checkpoints (projection, aggregate_type, aggregate_id, \
             last_sequence, parked_by) VALUES ('stock', 'inventory', $1, 1, $2)",
    )
    .bind(sku)
    .bind(ids[0])
    .execute(&app.db)
    .await
    .expect("insert checkpoint");
    (ids[0], ids[1])
}

async fn letter(app: &TestApp, id: i64) -> (Option<String>, Option<String>, Option<String>) {
    sqlx::query_as(
        "SELECT resolution, resolved_by, resolution_reason FROM read_model.dead_letters \
         WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&app.db)
    .await
    .expect("read dead letter")
}

async fn held_events(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM read_model.retry_events")
        .fetch_one(&app.db)
        .await
        .expect("count held events")
}

#[tokio::test]
async fn console_data_needs_auditor_and_its_actions_need_operator() {
    let app = spawn_console(true, None).await;
    let (poison, _) = insert_parked_aggregate(&app, "CON-SEC", 10).await;
    let reader = bearer("dashboard", &["reader"]);
    let auditor = bearer("compliance", &["auditor"]);
    let operator = bearer("ops@example.com", &["auditor", "operator"]);
    let retry = format!("/console/api/dead-letters/{poison}/retry");

    for path in [
        "/console/api/overview",
        "/console/api/projections",
        "/console/api/dead-letters",
        "/console/api/sagas",
    ] {
        app.get(path)
            .await
            .assert_problem(401, "auth.missing_token");
        app.get_with(path, &[("authorization", &reader)])
            .await
            .assert_problem(403, "auth.forbidden");
        let ok = app.get_with(path, &[("authorization", &auditor)]).await;
        assert_eq!(ok.status, 200, "{path}: {}", ok.text);
    }

    // Refused actions change nothing.
    app.post(&retry, json!({}))
        .await
        .assert_problem(401, "auth.missing_token");
    app.post_with(&retry, json!({}), &[("authorization", &auditor)])
        .await
        .assert_problem(403, "auth.forbidden");
    app.post_with(
        &format!("/console/api/dead-letters/{poison}/skip"),
        json!({"reason": "not mine to skip"}),
        &[("authorization", &reader)],
    )
    .await
    .assert_problem(403, "auth.forbidden");
    assert_eq!(letter(&app, poison).await, (None, None, None));
    assert_eq!(held_events(&app).await, 0);

    // The operator's answer is recorded with the token's subject.
    let answered = app
        .post_with(&retry, json!({}), &[("authorization", &operator)])
        .await;
    assert_eq!(answered.assert_ok()["actor"], "ops@example.com");
    assert_eq!(
        letter(&app, poison).await,
        (
            Some("retried".to_owned()),
            Some("ops@example.com".to_owned()),
            None
        )
    );
    app.finish().await;
}

#[tokio::test]
async fn the_web_app_is_public_and_says_when_it_was_not_built() {
    let dir = std::env::temp_dir().join(format!("keel-console-{}", Uuid::new_v4()));
    std::fs::create_dir_all(dir.join("assets")).expect("create console dir");
    std::fs::write(
        dir.join("index.html"),
        "<!doctype html><title>keel console</title>",
    )
    .expect("write index.html");
    std::fs::write(dir.join("assets/app.js"), "console.log('keel')").expect("write app.js");
    let app = spawn_console(true, Some(dir.clone())).await;
    let page = app.get("/console/").await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains("keel console"), "{}", page.text);
    let script = app.get("/console/assets/app.js").await;
    assert_eq!(script.status, 200);
    assert!(
        script
            .header("content-type")
            .is_some_and(|value| value.contains("javascript")),
        "{:?}",
        script.headers
    );
    assert_eq!(app.get("/console/assets/missing.js").await.status, 404);
    app.finish().await;
    std::fs::remove_dir_all(&dir).expect("remove console dir");

    let missing = std::env::temp_dir().join(format!("keel-console-{}", Uuid::new_v4()));
    let app = spawn_console(true, Some(missing)).await;
    app.get("/console/")
        .await
        .assert_problem(503, "console.not_built");
    app.finish().await;
}

#[tokio::test]
async fn an_operator_retries_or_skips_a_dead_letter_and_a_refused_answer_changes_nothing() {
    let app = spawn_console(false, None).await;
    let (poison, parked) = insert_parked_aggregate(&app, "CON-RETRY", 10).await;
    let (other_poison, _) = insert_parked_aggregate(&app, "CON-SKIP", 20).await;

    let listed = app.get("/console/api/dead-letters?projection=stock").await;
    let letters = listed.assert_ok()["dead_letters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(letters.len(), 4, "{letters:?}");
    assert_eq!(letters[3]["id"], poison, "newest first: {letters:?}");
    assert_eq!(letters[3]["reason"], "poison");
    assert_eq!(letters[3]["aggregate_id"], "CON-RETRY");

    // Answers that cannot be given: nothing changes.
    app.post(
        &format!("/console/api/dead-letters/{parked}/retry"),
        json!({}),
    )
    .await
    .assert_problem(409, "dead_letter.held_behind");
    app.post("/console/api/dead-letters/999999/retry", json!({}))
        .await
        .assert_problem(404, "dead_letter.not_found");
    app.post(
        &format!("/console/api/dead-letters/{other_poison}/skip"),
        json!({"reason": "   "}),
    )
    .await
    .assert_problem(422, "dead_letter.invalid_answer");
    app.post(
        &format!("/console/api/dead-letters/{other_poison}/skip"),
        json!({"why": "typo"}),
    )
    .await
    .assert_problem(400, "request.invalid_body");
    app.post(
        &format!("/console/api/dead-letters/{poison}/retry"),
        json!({"force": true}),
    )
    .await
    .assert_problem(400, "request.invalid_body");
    assert_eq!(letter(&app, poison).await, (None, None, None));
    assert_eq!(letter(&app, other_poison).await, (None, None, None));
    assert_eq!(held_events(&app).await, 0);

    // Retry: the letter and the one behind it go back to the projector.
    let retried = app
        .post(
            &format!("/console/api/dead-letters/{poison}/retry"),
            json!({}),
        )
        .await;
    let body = retried.assert_ok();
    assert_eq!(body["dead_letters"], json!([poison, parked]));
    assert_eq!(body["requeued"], 2);
    assert_eq!(body["actor"], "anonymous");
    assert_eq!(held_events(&app).await, 2);
    app.post(
        &format!("/console/api/dead-letters/{poison}/retry"),
        json!({}),
    )
    .await
    .assert_problem(409, "dead_letter.already_resolved");

    // Skip: the reason is recorded; the checkpoint moves past the event.
    let skipped = app
        .post(
            &format!("/console/api/dead-letters/{other_poison}/skip"),
            json!({"reason": "bad price in a migrated event; rebuilt tonight"}),
        )
        .await;
    assert_eq!(skipped.assert_ok()["dead_letters"][0], other_poison);
    assert_eq!(
        letter(&app, other_poison).await,
        (
            Some("skipped".to_owned()),
            Some("anonymous".to_owned()),
            Some("bad price in a migrated event; rebuilt tonight".to_owned())
        )
    );
    let (last_sequence, parked_by): (i64, Option<i64>) = sqlx::query_as(
        "SELECT last_sequence, parked_by FROM read_model.checkpoints \
         WHERE projection = 'stock' AND aggregate_id = 'CON-SKIP'",
    )
    .fetch_one(&app.db)
    .await
    .expect("read checkpoint");
    assert_eq!((last_sequence, parked_by), (2, None));

    // Resolved letters are listed on request, with who answered.
    let unresolved = app.get("/console/api/dead-letters").await;
    assert_eq!(unresolved.assert_ok()["dead_letters"], json!([]));
    let all = app
        .get("/console/api/dead-letters?include_resolved=true&limit=1")
        .await;
    let newest = &all.assert_ok()["dead_letters"];
    assert_eq!(newest.as_array().map(Vec::len), Some(1), "{newest}");
    assert_eq!(newest[0]["resolved_by"], "anonymous");
    app.finish().await;
}

#[test]
fn the_console_knows_every_status_the_saga_stores() {
    for status in console::flows::STATUSES {
        let parsed: Result<saga::SagaStatus, _> = serde_json::from_value(json!(status));
        assert_eq!(parsed.map(saga::SagaStatus::as_str).ok(), Some(status));
    }
}

async fn insert_flow(app: &TestApp, status: &str, moved_seconds_ago: i64) -> Uuid {
    let order_id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO saga_instances (order_id, payment_id, correlation_id, status, state, \
             started_at, updated_at) \
         VALUES ($1, $2, $1, $3, '{}'::jsonb, now() - $4 * interval '1 second', \
                 now() - $4 * interval '1 second')",
    )
    .bind(order_id)
    .bind(Uuid::new_v4())
    .bind(status)
    .bind(moved_seconds_ago)
    .execute(&app.db)
    .await
    .expect("insert saga instance");
    order_id
}

#[tokio::test]
async fn saga_flows_list_failed_then_stuck_first_and_one_flow_reads_as_a_timeline() {
    let app = spawn_console(false, None).await;
    let completed = insert_flow(&app, "completed", 3_600).await;
    let moving = insert_flow(&app, "authorizing", 1).await;
    let stuck = insert_flow(&app, "reserving", 600).await;
    let failed = insert_flow(&app, "failed", 7_200).await;
    let event_id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO saga_processed_events (event_id, order_id, event_type, processed_at) \
         VALUES ($1, $2, 'OrderPlaced', now() - interval '600 seconds')",
    )
    .bind(event_id)
    .bind(stuck)
    .execute(&app.db)
    .await
    .expect("insert processed event");
    sqlx::query(
        "INSERT INTO saga_commands (order_id, idempotency_key, causation_id, command, status, \
             attempts, last_error, created_at) \
         VALUES ($1, 'k-1', $2, '{\"kind\":\"reserve_stock\",\"sku\":\"KB-1\",\"quantity\":2}', \
                 'pending', 3, 'http 503', now() - interval '599 seconds')",
    )
    .bind(stuck)
    .bind(event_id)
    .execute(&app.db)
    .await
    .expect("insert saga command");

    let listed = app.get("/console/api/sagas").await;
    let body = listed.assert_ok();
    let order: Vec<&str> = body["flows"]
        .as_array()
        .map(|flows| {
            flows
                .iter()
                .filter_map(|f| f["order_id"].as_str())
                .collect()
        })
        .unwrap_or_default();
    let expected = [failed, stuck, moving, completed].map(|id| id.to_string());
    assert_eq!(order, expected, "{body}");
    assert_eq!(body["flows"][1]["stuck"], true);
    assert_eq!(body["flows"][1]["pending_commands"], 1);
    assert_eq!(body["flows"][1]["last_error"], "http 503");
    assert_eq!(body["flows"][2]["stuck"], false);
    assert_eq!(body["counts"]["failed"], 1);
    assert_eq!(body["counts"]["refunded"], 0);
    assert_eq!(body["next_cursor"], Value::Null);

    // Page by page, the same order.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/console/api/sagas?limit=1&cursor={cursor}"),
            None => "/console/api/sagas?limit=1".to_owned(),
        };
        let page = app.get(&path).await;
        let page = page.assert_ok();
        paged.extend(
            page["flows"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|flow| flow["order_id"].as_str().map(str::to_owned)),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(paged, expected);

    let filtered = app.get("/console/api/sagas?status=failed").await;
    assert_eq!(
        filtered.assert_ok()["flows"][0]["order_id"],
        failed.to_string()
    );
    assert_eq!(filtered.body["flows"].as_array().map(Vec::len), Some(1));

    let detail = app.get(&format!("/console/api/sagas/{stuck}")).await;
    let detail = detail.assert_ok();
    assert_eq!(detail["flow"]["status"], "reserving");
    assert_eq!(detail["steps"][0]["kind"], "event");
    assert_eq!(detail["steps"][0]["event_type"], "OrderPlaced");
    assert_eq!(detail["steps"][1]["kind"], "command");
    assert_eq!(detail["steps"][1]["step"], "reserve_stock:KB-1");
    assert_eq!(detail["steps"][1]["attempts"], 3);
    assert_eq!(detail["steps"][1]["causation_id"], event_id.to_string());
    app.finish().await;
}

#[tokio::test]
async fn the_overview_counts_recent_events_and_commands_and_projections_show_their_lag() {
    let app = spawn_console(false, None).await;
    let event = |n: i64| NewEvent {
        event_type: "StockAdded".to_owned(),
        event_version: "1".to_owned(),
        payload: json!({"StockAdded": {"quantity": n}}),
        metadata: json!({"correlation_id": Uuid::new_v4().to_string(), "actor": "test"}),
    };
    // Three commands: two events on one stream, one on another, then one more later.
    let batch = [
        StreamAppend {
            aggregate_type: "inventory".to_owned(),
            aggregate_id: "CON-OV-1".to_owned(),
            after_sequence: 0,
            events: vec![event(1), event(2)],
        },
        StreamAppend {
            aggregate_type: "inventory".to_owned(),
            aggregate_id: "CON-OV-2".to_owned(),
            after_sequence: 0,
            events: vec![event(3)],
        },
    ];
    append_batch(&app.db, &batch).await.expect("append");
    let later = [StreamAppend {
        aggregate_type: "inventory".to_owned(),
        aggregate_id: "CON-OV-1".to_owned(),
        after_sequence: 2,
        events: vec![event(4)],
    }];
    append_batch(&app.db, &later).await.expect("append");

    let overview = app.get("/console/api/overview?minutes=2").await;
    let body = overview.assert_ok();
    assert_eq!(body["bucket_seconds"], 2);
    let buckets = body["buckets"].as_array().cloned().unwrap_or_default();
    assert!((60..=61).contains(&buckets.len()), "{}", buckets.len());
    let total = |field: &str| -> i64 {
        buckets
            .iter()
            .filter_map(|bucket| bucket[field].as_i64())
            .sum()
    };
    assert_eq!(total("events"), 4, "{body}");
    assert_eq!(total("commands"), 3, "{body}");
    assert_eq!(body["log_head"], 4);

    // Nothing applied yet: the stock projection lags by all four events.
    let projections = app.get("/console/api/projections").await;
    let body = projections.assert_ok();
    let stock = body["projections"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["projection"] == "stock"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(stock["events_in_store"], 4, "{body}");
    assert_eq!(stock["events_applied"], 0);
    assert_eq!(stock["lag_events"], 4);
    assert_eq!(
        stock["lag_seconds"],
        Value::Null,
        "no checkpoint ever moved"
    );
    assert_eq!(stock["rebuild"], Value::Null);
    assert_eq!(body["log_head"], 4);
    app.finish().await;
}

#[tokio::test]
async fn bad_input_to_every_console_endpoint_gets_a_problem_and_changes_nothing() {
    let app = spawn_console(false, None).await;
    let (poison, _) = insert_parked_aggregate(&app, "CON-BAD", 10).await;
    for (path, parameter) in [
        ("/console/api/overview?minutes=0", "minutes"),
        ("/console/api/overview?minutes=61", "minutes"),
        ("/console/api/overview?minutes=five", "minutes"),
        ("/console/api/overview?hours=1", "hours"),
        ("/console/api/projections?projection=stock", "projection"),
        ("/console/api/dead-letters?projection=nope", "projection"),
        (
            "/console/api/dead-letters?include_resolved=maybe",
            "include_resolved",
        ),
        ("/console/api/dead-letters?limit=0", "limit"),
        ("/console/api/dead-letters?limit=1&limit=2", "limit"),
        ("/console/api/sagas?status=lost", "status"),
        ("/console/api/sagas?cursor=garbage", "cursor"),
        ("/console/api/sagas?limit=201", "limit"),
    ] {
        app.get(path)
            .await
            .assert_bad_parameter("request.invalid_parameter", parameter);
    }
    app.get("/console/api/sagas/not-a-uuid")
        .await
        .assert_bad_parameter("request.invalid_path", "order_id");
    app.get(&format!("/console/api/sagas/{}", Uuid::new_v4()))
        .await
        .assert_problem(404, "saga.flow_not_found");
    app.post("/console/api/dead-letters/abc/retry", json!({}))
        .await
        .assert_bad_parameter("request.invalid_path", "id");
    app.post(
        &format!("/console/api/dead-letters/{poison}/skip"),
        Value::Null,
    )
    .await
    .assert_problem(400, "request.invalid_body");
    app.post(
        &format!("/console/api/dead-letters/{poison}/skip"),
        json!({"reason": "x".repeat(1_001)}),
    )
    .await
    .assert_problem(422, "dead_letter.invalid_answer");
    let raw = app
        .inner()
        .post(app.url(&format!("/console/api/dead-letters/{poison}/retry")))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("request sent");
    assert_eq!(raw.status(), 400);
    app.send(
        reqwest::Method::DELETE,
        &format!("/console/api/dead-letters/{poison}/retry"),
        Value::Null,
        &[],
    )
    .await
    .assert_problem(405, "http.method_not_allowed");
    assert_eq!(letter(&app, poison).await, (None, None, None));
    assert_eq!(held_events(&app).await, 0);
    app.finish().await;
}
