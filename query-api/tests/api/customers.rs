//! `/customers/{customer_id}/orders`: newest first, keyset pagination, status filter.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{OrderRow, TestApp, at_json, spawn_app};

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["order_id"].as_str().expect("order_id").to_owned())
        .collect()
}

async fn page(app: &TestApp, path: &str) -> Value {
    app.get(path).await.assert_ok().clone()
}

#[tokio::test]
async fn customer_orders_are_listed_newest_first_with_exact_values() {
    let app = spawn_app().await;
    let customer = Uuid::new_v4();
    let older = OrderRow {
        status: "delivered",
        total_minor: 1999,
        line_count: 2,
        version: 9,
        ..OrderRow::new(customer, 0)
    };
    let newer = OrderRow::new(customer, 60);
    for order in [&older, &newer] {
        app.insert_customer_order(order).await;
    }
    app.insert_customer_order(&OrderRow::new(Uuid::new_v4(), 30))
        .await;

    let body = page(&app, &format!("/customers/{customer}/orders")).await;

    assert_eq!(
        body,
        json!({
            "items": [
                {
                    "order_id": newer.order_id, "customer_id": customer, "status": "placed",
                    "total": {"amount_minor": 2500, "currency": "EUR"}, "line_count": 1,
                    "created_at": at_json(60), "updated_at": at_json(60), "version": 3,
                },
                {
                    "order_id": older.order_id, "customer_id": customer, "status": "delivered",
                    "total": {"amount_minor": 1999, "currency": "EUR"}, "line_count": 2,
                    "created_at": at_json(0), "updated_at": at_json(0), "version": 9,
                },
            ],
            "next_cursor": null,
        })
    );

    let unknown = page(&app, &format!("/customers/{}/orders", Uuid::new_v4())).await;
    assert_eq!(unknown, json!({"items": [], "next_cursor": null}));
    app.finish().await;
}

#[tokio::test]
async fn three_pages_return_every_order_once_in_order_even_with_inserts_between_pages() {
    let app = spawn_app().await;
    let customer = Uuid::new_v4();
    // 8 orders; two pairs share a created_at, so the order_id tie-break matters.
    let mut orders: Vec<OrderRow> = [0, 10, 10, 20, 30, 30, 40, 50]
        .into_iter()
        .map(|created| OrderRow::new(customer, created))
        .collect();
    for order in &orders {
        app.insert_customer_order(order).await;
    }
    orders.sort_by_key(|o| std::cmp::Reverse((o.created_at, o.order_id)));
    let expected: Vec<String> = orders.iter().map(|o| o.order_id.to_string()).collect();

    let first = page(&app, &format!("/customers/{customer}/orders?limit=3")).await;
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    assert_eq!(ids(&first), expected[0..3]);

    // A new order (newest of all) and one between existing ones arrive while paging.
    let newest = OrderRow::new(customer, 100);
    let in_between = OrderRow::new(customer, 5);
    app.insert_customer_order(&newest).await;
    app.insert_customer_order(&in_between).await;

    let second = page(
        &app,
        &format!("/customers/{customer}/orders?limit=3&cursor={cursor}"),
    )
    .await;
    // Same cursor, same page: the cursor is a stable position, not an offset.
    let again = page(
        &app,
        &format!("/customers/{customer}/orders?cursor={cursor}&limit=3"),
    )
    .await;
    assert_eq!(second, again);
    assert_eq!(ids(&second), expected[3..6]);
    let cursor = second["next_cursor"].as_str().expect("a third page");

    let third = page(
        &app,
        &format!("/customers/{customer}/orders?limit=3&cursor={cursor}"),
    )
    .await;
    assert_eq!(third["next_cursor"], Value::Null, "{third}");

    let seen: Vec<String> = [&first, &second, &third]
        .into_iter()
        .flat_map(ids)
        .collect();
    // The order created between existing ones sorts after the cursor, so it shows up on the
    // last page in its place; the newest sorts before the first page and is not mixed in.
    let mut expected_with_late_insert = expected.clone();
    expected_with_late_insert.insert(7, in_between.order_id.to_string());
    assert_eq!(seen, expected_with_late_insert);
    assert!(!seen.contains(&newest.order_id.to_string()));
    app.finish().await;
}

#[tokio::test]
async fn a_full_last_page_has_no_next_cursor() {
    let app = spawn_app().await;
    let customer = Uuid::new_v4();
    for created in [0, 1] {
        app.insert_customer_order(&OrderRow::new(customer, created))
            .await;
    }
    let body = page(&app, &format!("/customers/{customer}/orders?limit=2")).await;
    assert_eq!(ids(&body).len(), 2);
    assert_eq!(body["next_cursor"], Value::Null);
    app.finish().await;
}

#[tokio::test]
async fn status_filter_keeps_only_that_status_and_pages_within_it() {
    let app = spawn_app().await;
    let customer = Uuid::new_v4();
    let statuses = ["placed", "cancelled", "placed", "delivered", "placed"];
    let mut placed = Vec::new();
    for (i, status) in statuses.into_iter().enumerate() {
        let order = OrderRow {
            status,
            ..OrderRow::new(customer, i64::try_from(i).expect("small"))
        };
        app.insert_customer_order(&order).await;
        if status == "placed" {
            placed.push(order.order_id.to_string());
        }
    }
    placed.reverse();

    let first = page(
        &app,
        &format!("/customers/{customer}/orders?status=placed&limit=2"),
    )
    .await;
    assert_eq!(ids(&first), placed[0..2]);
    let cursor = first["next_cursor"].as_str().expect("second page");
    let second = page(
        &app,
        &format!("/customers/{customer}/orders?status=placed&limit=2&cursor={cursor}"),
    )
    .await;
    assert_eq!(ids(&second), placed[2..]);
    assert_eq!(second["next_cursor"], Value::Null);

    let cancelled = page(
        &app,
        &format!("/customers/{customer}/orders?status=cancelled"),
    )
    .await;
    assert_eq!(cancelled["items"].as_array().expect("items").len(), 1);
    assert_eq!(cancelled["items"][0]["status"], "cancelled");
    let confirmed = page(
        &app,
        &format!("/customers/{customer}/orders?status=confirmed"),
    )
    .await;
    assert_eq!(confirmed["items"], json!([]));
    app.finish().await;
}

#[tokio::test]
async fn bad_listing_parameters_are_400_naming_the_parameter() {
    let app = spawn_app().await;
    let customer = Uuid::new_v4();
    app.insert_customer_order(&OrderRow::new(customer, 0)).await;
    let base = format!("/customers/{customer}/orders");
    let stock_cursor = {
        app.insert_stock("SKU-1", 1, 0, 0, 1).await;
        app.insert_stock("SKU-2", 1, 0, 0, 1).await;
        let stock = app.get("/stock?limit=1").await;
        stock.assert_ok()["next_cursor"]
            .as_str()
            .expect("stock cursor")
            .to_owned()
    };

    for (query, parameter) in [
        ("status=shipping", "status"),
        ("status=Placed", "status"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=-5", "limit"),
        ("limit=ten", "limit"),
        ("limit=2&limit=3", "limit"),
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=", "cursor"),
        (&format!("cursor={stock_cursor}"), "cursor"),
        ("sort=asc", "sort"),
    ] {
        let response = app.get(&format!("{base}?{query}")).await;
        response.assert_bad_parameter("request.invalid_parameter", parameter);
    }

    let body = app.get(&format!("{base}?limit=200")).await;
    assert_eq!(ids(body.assert_ok()).len(), 1);
    app.finish().await;
}
