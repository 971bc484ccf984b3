-- Per-customer data keys for personal data (crypto-shredding, see
-- docs/adr/0009-crypto-shredding.md). A data key is stored wrapped (AES-256-GCM) by a
-- master key that only the processes hold; events, snapshots and messages carry only
-- ciphertext and the key id. Destroying a key erases the customer's personal data
-- everywhere without touching the append-only, hash-chained events.

CREATE TABLE customer_keys
(
    key_id        uuid        PRIMARY KEY,
    customer_id   uuid        NOT NULL,
    -- nonce || wrapped key || tag; NULL once the key is destroyed.
    wrapped_key   bytea,
    -- Which master key wraps it (an id derived from the key, never the key); NULL once
    -- destroyed. Rotation re-wraps every live key to the current master key.
    master_key_id text,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    rewrapped_at  timestamptz,
    destroyed_at  timestamptz,
    CHECK ((wrapped_key IS NULL) = (destroyed_at IS NOT NULL)),
    CHECK ((master_key_id IS NULL) = (destroyed_at IS NOT NULL))
);

-- At most one live key per customer; destroyed keys keep their row, so "forgotten" can be
-- told from "never known".
CREATE UNIQUE INDEX customer_keys_live ON customer_keys (customer_id) WHERE destroyed_at IS NULL;
CREATE INDEX customer_keys_by_customer ON customer_keys (customer_id);
-- The rotation's scan: live keys not yet under the current master key.
CREATE INDEX customer_keys_by_master_key ON customer_keys (master_key_id) WHERE destroyed_at IS NULL;

-- Forgetting a customer destroys their keys in the transaction that appends the
-- `CustomerForgotten` event, so the fact and its effect commit together. The WHEN clause
-- is evaluated without calling the function: every other append pays nothing.
CREATE FUNCTION events_destroy_customer_keys() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    UPDATE customer_keys
       SET wrapped_key   = NULL,
           master_key_id = NULL,
           destroyed_at  = clock_timestamp()
     WHERE customer_id = NEW.aggregate_id::uuid
       AND destroyed_at IS NULL;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_destroy_customer_keys
    AFTER INSERT ON events
    FOR EACH ROW
    WHEN (NEW.aggregate_type = 'customer' AND NEW.event_type = 'CustomerForgotten')
    EXECUTE FUNCTION events_destroy_customer_keys();
