-- S1 baseline: one command = one transaction appending one event, exactly as postgres-es
-- 0.5 does it (`PostgresEventRepository::insert_events`: BEGIN, its insert_event statement
-- with seven bound parameters, COMMIT). Every trigger of the event store fires as on the
-- command path: event id, idempotency-key capture, hash-chain seal, outbox enqueue.
--
-- Run with `-M prepared` (the statement is then prepared once per connection with $1..$7,
-- as sqlx does) and the variables `aggregate_type`, `event_type`, `event_version`,
-- `payload` and `metadata` set with -D; `bench pgbench` does both against a scratch
-- database. Each transaction appends sequence 1 of a new aggregate (`POST /orders`), whose
-- id is a random 19-digit number (the API's are 36-character UUIDs).
\set aggregate_id random(1000000000000000000, 9223372036854775806)
\set sequence 1
BEGIN;
INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
VALUES (:aggregate_type, :aggregate_id, :sequence, :event_type, :event_version, :payload, :metadata);
COMMIT;
