//! What crypto-shredding adds to one create-order command with personal data, in CPU time
//! (ADR 0009): unwrap the customer's data key with the master key, serialize the details,
//! seal them (AES-256-GCM with a fresh nonce), and open them again as a projector does.
//! The key table's round trip is not measured here (the store benchmarks measure queries).
//!
//! A timing run: nothing else may run on the machine (BENCHMARKS.md). Run it with
//! `cargo run --release -p event-store --example seal_cost [iterations]`.

use std::hint::black_box;
use std::time::Instant;

use event_store::customer_keys::{Keyring, MasterKey};
use uuid::Uuid;

const DETAILS: &str = r#"{"name":"Ada Lovelace","email":"ada@example.com","shipping_address":{"line1":"12 St James's Square","line2":"Flat 2","city":"London","postal_code":"SW1Y 4JH","country":"GB"}}"#;

fn per_op(label: &str, iterations: u32, mut op: impl FnMut()) {
    for _ in 0..iterations / 10 {
        op();
    }
    let started = Instant::now();
    for _ in 0..iterations {
        op();
    }
    let micros = started.elapsed().as_secs_f64() * 1e6 / f64::from(iterations);
    println!("{label:<44} {micros:>8.2} µs/op");
}

fn main() {
    let iterations: u32 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let keyring = Keyring::new(MasterKey::from_bytes(&[7; 32]), vec![]);
    let customer = Uuid::from_u128(42);
    let (key, wrapped) = keyring.new_data_key(customer);
    let master = keyring.current_id().to_owned();
    let sealed = key.seal(DETAILS.as_bytes());

    println!(
        "{iterations} iterations, {} bytes of details",
        DETAILS.len()
    );
    per_op("unwrap the data key (master key)", iterations, || {
        black_box(
            keyring
                .unwrap_key(customer, key.key_id(), black_box(&wrapped), &master)
                .ok(),
        );
    });
    per_op("seal the details", iterations, || {
        black_box(key.seal(black_box(DETAILS.as_bytes())));
    });
    per_op("open the details (projector, auditor)", iterations, || {
        black_box(key.open(black_box(&sealed)).ok());
    });
    per_op("create-order path: unwrap + seal", iterations, || {
        let key = keyring
            .unwrap_key(customer, key.key_id(), black_box(&wrapped), &master)
            .ok();
        black_box(key.map(|k| k.seal(black_box(DETAILS.as_bytes()))));
    });
}
