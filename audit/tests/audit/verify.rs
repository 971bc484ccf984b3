//! Hash chains: sealed by the database at every append, verified in Rust by
//! `/audit/…/verify` and by `keel-audit verify`.

use chrono::{DateTime, Utc};
use event_store::hash_chain::{self as hash, ChainHash, GENESIS, SealedContent};
use serde_json::{Value, json};
use sqlx::Row;
use uuid::Uuid;

use crate::helpers::{Stack, spawn_stack};

/// An order with `lines` lines: `1 + lines` events.
async fn order_with_lines(stack: &Stack, lines: u32) -> String {
    let order_id = stack.create_order(&[]).await;
    for i in 1..=lines {
        stack.add_line(&order_id, &format!("SKU-{i}"), i).await;
    }
    order_id
}

async fn history(stack: &Stack, aggregate_type: &str, aggregate_id: &str) -> Vec<Value> {
    let (items, _) = stack
        .all_pages(&format!(
            "/audit/streams/{aggregate_type}/{aggregate_id}/events?limit=200"
        ))
        .await;
    items
}

async fn verify_stream(stack: &Stack, aggregate_type: &str, aggregate_id: &str) -> Value {
    stack
        .get(&format!(
            "/audit/streams/{aggregate_type}/{aggregate_id}/verify"
        ))
        .await
        .assert_ok()
        .clone()
}

/// Runs `keel-audit` against the stack's database; returns (exit code, stdout, stderr).
async fn keel_audit(stack: &Stack, args: &[&str]) -> (i32, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_keel-audit"))
        .args(args)
        .env("KEEL_DATABASE_URL", &stack.database_url)
        .output()
        .await
        .expect("keel-audit runs");
    (
        output.status.code().expect("exit code"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intact_chains_verify_per_stream_and_store_wide_page_by_page() {
    let stack = spawn_stack().await;
    let order_id = order_with_lines(&stack, 3).await;
    stack
        .post_ok("/inventory/SKU-V/stock", json!({"quantity": 3}), &[])
        .await;
    stack
        .post_ok("/inventory/SKU-V/stock", json!({"quantity": 4}), &[])
        .await;

    let order = verify_stream(&stack, "order", &order_id).await;
    assert_eq!(
        order,
        json!({"aggregate_type": "order", "aggregate_id": order_id, "verified": 4, "ok": true, "first_mismatch": null})
    );
    let store = stack.get("/audit/verify").await;
    assert_eq!(
        store.assert_ok(),
        &json!({"verified": 6, "ok": true, "first_mismatch": null, "next_cursor": null})
    );

    let mut verified = 0;
    let mut calls = 0;
    let mut path = "/audit/verify?limit=4".to_owned();
    loop {
        let body = stack.get(&path).await.assert_ok().clone();
        calls += 1;
        assert_eq!(body["ok"], true, "{body}");
        verified += body["verified"].as_u64().expect("verified");
        match &body["next_cursor"] {
            Value::String(cursor) => path = format!("/audit/verify?limit=4&cursor={cursor}"),
            _ => break,
        }
    }
    assert_eq!((verified, calls), (6, 2));

    stack
        .get(&format!("/audit/streams/order/{}/verify", Uuid::new_v4()))
        .await
        .assert_problem(404, "audit.stream_not_found");
    stack
        .get("/audit/verify?limit=10001")
        .await
        .assert_bad_parameter("request.invalid_parameter", "limit");
    stack
        .get("/audit/verify?cursor=xyz")
        .await
        .assert_bad_parameter("request.invalid_parameter", "cursor");

    let (code, stdout, stderr) = keel_audit(&stack, &["verify"]).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("6 events verified"), "{stdout}");
    stack.finish().await;
}

/// Rows appended by hand, several in one statement, with content that stresses the
/// encoding: the Rust recomputation, the trigger and the SQL function must all agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_chain_agrees_with_the_trigger_and_the_sql_function() {
    let stack = spawn_stack().await;
    sqlx::query(
        r#"INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
           VALUES ('order', 'hand-made', 1, 'OrderCreated', '1', '{"b": 1,   "a": "é ✓ 😀", "n": 1.50e3}', '{"actor": "x"}'),
                  ('order', 'hand-made', 2, 'OrderCancelled', '1', '{"reason": "quote \" back\\slash \n \u0000 \u00e9"}', '{}'),
                  ('order', 'hand-made', 3, 'OrderDelivered', '1', '[ ]', '{"k": {"z": [1, {"y": null}]}}'),
                  ('inventory', 'SKU:odd/id', 1, 'StockAdded', '1', '{"quantity": 18446744073709551616}', '{}')"#,
    )
    .execute(&stack.db)
    .await
    .expect("appended by hand");

    let rows = sqlx::query(
        "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, event_id, \
                recorded_at, payload::text AS payload, metadata::text AS metadata, hash, \
                events_chain_hash(coalesce(lag(hash) OVER w, decode(repeat('00', 32), 'hex')), \
                    aggregate_type, aggregate_id, sequence, event_type, event_version, event_id, \
                    recorded_at, payload, metadata) AS by_function \
         FROM events \
         WINDOW w AS (PARTITION BY aggregate_type, aggregate_id ORDER BY sequence) \
         ORDER BY aggregate_type, aggregate_id, sequence",
    )
    .fetch_all(&stack.db)
    .await
    .expect("rows");
    assert_eq!(rows.len(), 4);
    let mut prev: ChainHash = GENESIS;
    for row in &rows {
        let sequence: i64 = row.get("sequence");
        if sequence == 1 {
            prev = GENESIS;
        }
        let content = SealedContent {
            aggregate_type: row.get("aggregate_type"),
            aggregate_id: row.get("aggregate_id"),
            sequence,
            event_type: row.get("event_type"),
            event_version: row.get("event_version"),
            event_id: row.get("event_id"),
            recorded_at: row.get::<DateTime<Utc>, _>("recorded_at"),
            payload: row.get("payload"),
            metadata: row.get("metadata"),
        };
        let in_rust = content.chain_hash(&prev);
        let by_trigger: Vec<u8> = row.get("hash");
        let by_function: Vec<u8> = row.get("by_function");
        assert_eq!(
            hash::to_hex(&by_trigger),
            hash::to_hex(&in_rust),
            "{content:?}"
        );
        assert_eq!(by_function, by_trigger, "{content:?}");
        prev = in_rust;
    }

    let body = stack.get("/audit/verify").await.assert_ok().clone();
    assert_eq!(body["ok"], true, "{body}");
    assert_eq!(body["verified"], 4);
    // The id is percent-decoded from the path.
    let odd = verify_stream(&stack, "inventory", "SKU:odd%2Fid").await;
    assert_eq!(odd["ok"], true, "{odd}");
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_altered_in_sql_is_pinpointed_by_verify_and_the_cli() {
    let stack = spawn_stack().await;
    let order_id = order_with_lines(&stack, 4).await;
    stack
        .post_ok("/inventory/SKU-V/stock", json!({"quantity": 3}), &[])
        .await;
    let before = history(&stack, "order", &order_id).await;
    assert_eq!(before.len(), 5);
    let (code, _, _) = keel_audit(&stack, &["verify"]).await;
    assert_eq!(code, 0, "intact before the rewrite");

    stack
        .tamper(&format!(
            r#"UPDATE events SET payload = '{{"OrderLineAdded":{{"line":{{"sku":"SKU-2","quantity":200,"unit_price":{{"amount_minor":1250,"currency":"EUR"}}}}}}}}'
               WHERE aggregate_type = 'order' AND aggregate_id = '{order_id}' AND sequence = 3"#
        ))
        .await;
    let after = history(&stack, "order", &order_id).await;
    assert_eq!(
        after[2]["payload"]["OrderLineAdded"]["line"]["quantity"],
        200
    );
    let altered = &before[2];

    let verdict = verify_stream(&stack, "order", &order_id).await;
    assert_eq!(verdict["ok"], false, "{verdict}");
    assert_eq!(verdict["verified"], 2, "{verdict}");
    let mismatch = &verdict["first_mismatch"];
    assert_eq!(mismatch["aggregate_type"], "order");
    assert_eq!(mismatch["aggregate_id"], order_id);
    assert_eq!(mismatch["sequence"], 3);
    assert_eq!(mismatch["event_id"], altered["event_id"]);
    assert_eq!(mismatch["global_position"], altered["global_position"]);
    assert_eq!(mismatch["reason"], "hash_mismatch");
    assert_eq!(mismatch["stored_hash"], altered["hash"]);
    assert!(
        mismatch["expected_hash"]
            .as_str()
            .is_some_and(|h| h.len() == 64 && Some(h) != altered["hash"].as_str()),
        "{mismatch}"
    );

    let store = stack.get("/audit/verify").await.assert_ok().clone();
    assert_eq!(store["ok"], false, "{store}");
    assert_eq!(&store["first_mismatch"], mismatch);
    assert_eq!(store["next_cursor"], Value::Null);
    // `inventory` sorts before `order`: its event, then the order's first two.
    assert_eq!(store["verified"], 3);
    let untouched = verify_stream(&stack, "inventory", "SKU-V").await;
    assert_eq!(untouched["ok"], true);

    let event_id = altered["event_id"].as_str().expect("event id");
    let (code, stdout, stderr) = keel_audit(&stack, &["verify"]).await;
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("order {order_id} sequence 3")) && stdout.contains(event_id),
        "{stdout}"
    );
    let (code, stdout, _) = keel_audit(
        &stack,
        &[
            "verify",
            "--aggregate-type",
            "order",
            "--aggregate-id",
            &order_id,
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 1, "{stdout}");
    let json: Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(&json["first_mismatch"], mismatch);
    let (code, stdout, stderr) = keel_audit(
        &stack,
        &[
            "verify",
            "--aggregate-type",
            "inventory",
            "--aggregate-id",
            "SKU-V",
        ],
    )
    .await;
    assert_eq!(code, 0, "{stdout}{stderr}");

    let (code, stdout, stderr) = keel_audit(&stack, &["history", "order", &order_id]).await;
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(lines, after);
    let (code, _, stderr) = keel_audit(&stack, &["history", "order", "no-such-order"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("no events of order no-such-order"),
        "{stderr}"
    );
    let (code, _, _) = keel_audit(&stack, &["verify", "--aggregate-type", "order"]).await;
    assert_eq!(code, 2, "--aggregate-type needs --aggregate-id");
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_rewrite_is_caught_at_the_right_event() {
    let stack = spawn_stack().await;
    let where_ = |order_id: &str, sequence: i64| {
        format!(
            "WHERE aggregate_type = 'order' AND aggregate_id = '{order_id}' AND sequence = {sequence}"
        )
    };
    let mut cases = Vec::new();
    // (what is rewritten, the event reported, why, events verified before it, the rewrite)
    for (name, sequence_reported, reason, verified, rewrite) in [
        (
            "metadata",
            2,
            "hash_mismatch",
            1,
            r#"UPDATE events SET metadata = (metadata::jsonb || '{"actor": "mallory"}')::json"#,
        ),
        (
            "recorded_at",
            3,
            "hash_mismatch",
            2,
            "UPDATE events SET recorded_at = recorded_at - interval '1 day'",
        ),
        (
            "event_type",
            1,
            "hash_mismatch",
            0,
            "UPDATE events SET event_type = 'OrderDelivered'",
        ),
        (
            "whitespace only",
            2,
            "hash_mismatch",
            1,
            "UPDATE events SET payload = (payload::text || ' ')::json",
        ),
        (
            "hash",
            2,
            "hash_mismatch",
            1,
            "UPDATE events SET hash = sha256('forged'::bytea)",
        ),
        ("deleted", 3, "predecessor_missing", 1, "DELETE FROM events"),
    ] {
        let order_id = order_with_lines(&stack, 3).await;
        let target = if name == "deleted" {
            2
        } else {
            sequence_reported
        };
        stack
            .tamper(&format!("{rewrite} {}", where_(&order_id, target)))
            .await;
        cases.push((name, order_id, sequence_reported, reason, verified));
    }
    // Rewritten and resealed with the database's own function: the successor's link still
    // covers the original, so the successor is reported.
    let resealed = order_with_lines(&stack, 3).await;
    stack
        .tamper(&format!(
            r#"UPDATE events e SET payload = '{{"OrderLineAdded":{{"line":{{"sku":"SKU-1","quantity":9,"unit_price":{{"amount_minor":1,"currency":"EUR"}}}}}}}}',
                   hash = events_chain_hash(p.hash, e.aggregate_type, e.aggregate_id, e.sequence,
                       e.event_type, e.event_version, e.event_id, e.recorded_at,
                       '{{"OrderLineAdded":{{"line":{{"sku":"SKU-1","quantity":9,"unit_price":{{"amount_minor":1,"currency":"EUR"}}}}}}}}'::json,
                       e.metadata)
               FROM events p
               WHERE p.aggregate_type = e.aggregate_type AND p.aggregate_id = e.aggregate_id
                 AND p.sequence = 1 AND e.aggregate_type = 'order' AND e.aggregate_id = '{resealed}'
                 AND e.sequence = 2"#
        ))
        .await;
    cases.push(("resealed", resealed, 3, "hash_mismatch", 2));

    for (name, order_id, sequence, reason, verified) in &cases {
        let verdict = verify_stream(&stack, "order", order_id).await;
        assert_eq!(verdict["ok"], false, "{name}: {verdict}");
        assert_eq!(
            verdict["first_mismatch"]["sequence"], *sequence,
            "{name}: {verdict}"
        );
        assert_eq!(
            verdict["first_mismatch"]["reason"], *reason,
            "{name}: {verdict}"
        );
        assert_eq!(verdict["verified"], *verified, "{name}: {verdict}");
    }
    stack.finish().await;
}
