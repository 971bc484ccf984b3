//! `/stock/{sku}` and `/stock`.

use serde_json::{Value, json};

use crate::helpers::{at_json, spawn_app};

#[tokio::test]
async fn stock_level_has_on_hand_reserved_available_and_version() {
    let app = spawn_app().await;
    app.insert_stock("SKU-123", 10, 3, 40, 6).await;

    let response = app.get("/stock/SKU-123").await;

    assert_eq!(
        response.assert_ok(),
        &json!({
            "sku": "SKU-123",
            "on_hand": 10,
            "reserved": 3,
            "available": 7,
            "created_at": at_json(0),
            "updated_at": at_json(40),
            "version": 6,
        })
    );
    assert_eq!(response.header("etag"), Some("\"6\""));
    app.finish().await;
}

#[tokio::test]
async fn unknown_sku_is_404_problem() {
    let app = spawn_app().await;

    let response = app.get("/stock/NEVER-STOCKED").await;

    let body = response.assert_problem(404, "stock.not_found");
    assert_eq!(body["detail"], "no stock of NEVER-STOCKED");
    app.finish().await;
}

#[tokio::test]
async fn stock_listing_pages_by_sku() {
    let app = spawn_app().await;
    for (sku, on_hand) in [
        ("SKU-E", 5),
        ("SKU-A", 1),
        ("SKU-C", 3),
        ("SKU-B", 2),
        ("SKU-D", 4),
    ] {
        app.insert_stock(sku, on_hand, 0, 0, 1).await;
    }

    let mut skus = Vec::new();
    let mut path = "/stock?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let response = app.get(&path).await;
        let body = response.assert_ok().clone();
        pages += 1;
        for item in body["items"].as_array().expect("items") {
            assert_eq!(item["available"], item["on_hand"]);
            skus.push(item["sku"].as_str().expect("sku").to_owned());
        }
        match &body["next_cursor"] {
            Value::String(cursor) => path = format!("/stock?limit=2&cursor={cursor}"),
            Value::Null => break,
            other => panic!("next_cursor {other}"),
        }
        // A SKU stocked while paging, before the cursor: not mixed into later pages.
        if pages == 1 {
            app.insert_stock("SKU-0", 1, 0, 0, 1).await;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(skus, ["SKU-A", "SKU-B", "SKU-C", "SKU-D", "SKU-E"]);

    let all = app.get("/stock").await;
    assert_eq!(all.assert_ok()["items"].as_array().expect("items").len(), 6);
    assert_eq!(all.body["next_cursor"], Value::Null);

    for (query, parameter) in [
        ("limit=0", "limit"),
        ("limit=1000", "limit"),
        ("cursor=%%%", "cursor"),
        ("cursor=bm9wZQ", "cursor"),
        ("status=placed", "status"),
    ] {
        let response = app.get(&format!("/stock?{query}")).await;
        response.assert_bad_parameter("request.invalid_parameter", parameter);
    }
    app.finish().await;
}
