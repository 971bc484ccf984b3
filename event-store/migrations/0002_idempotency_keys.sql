-- Idempotency keys of accepted commands, recorded in the transaction that appends the
-- command's events (see docs/adr/0003-command-api-concurrency-and-idempotency.md).
--
-- postgres-es owns that transaction, so the key travels in the event metadata and a
-- trigger on `events` records it here. A key is scoped by actor. The row says which
-- response the command produced: the aggregate, its version after the command, and how
-- many events it appended (so the events are `version - event_count + 1 ..= version`).
-- A command that appended nothing (an idempotent no-op) is recorded by the command API
-- itself with `event_count = 0`.

CREATE TABLE idempotency_keys
(
    actor               text        NOT NULL,
    idempotency_key     text        NOT NULL,
    -- SHA-256 (hex) of the operation, its target and its canonical body; NULL when the
    -- writer did not supply one (such a key never matches a fingerprinted request).
    request_fingerprint text,
    aggregate_type      text        NOT NULL,
    aggregate_id        text        NOT NULL,
    version             bigint      NOT NULL CHECK (version >= 0),
    event_count         integer     NOT NULL CHECK (event_count >= 0),
    -- Lets the trigger tell "a later event of my own command" from "another command
    -- that already holds this key".
    transaction_id      xid8        NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (actor, idempotency_key)
);

-- For a future retention job (keys are kept forever for now).
CREATE INDEX idempotency_keys_recorded_at ON idempotency_keys (recorded_at);

-- Runs BEFORE INSERT so that it can drop the fingerprint from the stored metadata: the
-- fingerprint is transport plumbing, not part of the event's metadata contract. It must
-- fire before any other BEFORE trigger that reads `metadata` (triggers of one kind fire
-- in name order; `events_assign_event_id` is the only earlier one and does not care).
--
-- A second command presenting a key that another transaction holds (committed, or in
-- flight: the INSERT waits for it) fails with unique_violation (23505), which
-- postgres-es reports as an aggregate conflict; the command API then answers with the
-- recorded response or with "key reused".
CREATE FUNCTION events_capture_idempotency_key() RETURNS trigger
    LANGUAGE plpgsql AS
$$
DECLARE
    v_meta        jsonb := NEW.metadata::jsonb;
    v_key         text  := v_meta ->> 'idempotency_key';
    v_actor       text  := coalesce(v_meta ->> 'actor', '');
    v_fingerprint text  := v_meta ->> 'request_fingerprint';
BEGIN
    IF v_meta ? 'request_fingerprint' THEN
        NEW.metadata := (v_meta - 'request_fingerprint')::json;
    END IF;
    IF v_key IS NULL THEN
        RETURN NEW;
    END IF;

    INSERT INTO idempotency_keys (actor, idempotency_key, request_fingerprint,
                                  aggregate_type, aggregate_id, version, event_count)
    VALUES (v_actor, v_key, v_fingerprint, NEW.aggregate_type, NEW.aggregate_id, NEW.sequence, 1)
    ON CONFLICT (actor, idempotency_key) DO NOTHING;
    IF FOUND THEN
        RETURN NEW;
    END IF;

    -- Not the first event of this command: extend the command's own row.
    UPDATE idempotency_keys
       SET version     = NEW.sequence,
           event_count = event_count + 1
     WHERE actor = v_actor
       AND idempotency_key = v_key
       AND transaction_id = pg_current_xact_id()
       AND aggregate_type = NEW.aggregate_type
       AND aggregate_id = NEW.aggregate_id;
    IF FOUND THEN
        RETURN NEW;
    END IF;

    RAISE EXCEPTION 'idempotency key % of actor % is already used', v_key, v_actor
        USING ERRCODE = 'unique_violation';
END
$$;

CREATE TRIGGER events_capture_idempotency_key
    BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION events_capture_idempotency_key();
