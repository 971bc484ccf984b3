-- A hash chain per stream, sealed at append time, so that an event rewritten in place
-- (the append-only trigger can be disabled by the table's owner) is detectable: the audit
-- trail's verify (query-api, `GET /audit/.../verify`, `keel-audit verify`) recomputes every
-- hash in Rust and reports the first event whose stored content no longer matches.
--
--   hash(n) = sha256(hash(n - 1) || canonical(n)), hash(0) = 32 zero bytes
--
--   canonical = 0x01                                  format version
--            || text(aggregate_type) || text(aggregate_id)
--            || int8(sequence)
--            || text(event_type) || text(event_version)
--            || uuid(event_id)                        16 bytes
--            || int8(recorded_at, µs since the Unix epoch)
--            || text(payload) || text(metadata)       the stored json text, byte for byte
--   text(t)   = int4(byte length of t in UTF-8) || UTF-8 bytes of t
--   int4, int8: big-endian two's complement
--
-- Length prefixes make the encoding unambiguous. The json columns are hashed as stored (not
-- as jsonb): any rewrite shows, even a whitespace-only one, and appends cannot start to fail
-- on text that json accepts and jsonb does not (`\u0000`). `recorded_at` is in, so time
-- travel (`?at=`) cannot be steered by editing timestamps; `transaction_id` and
-- `global_position` are storage positions, not content, and are not.
--
-- The Rust twin is `query_api::audit::hash`; a test proves both agree.

ALTER TABLE events ADD COLUMN hash bytea;

CREATE FUNCTION events_chain_hash(
    prev_hash      bytea,
    aggregate_type text,
    aggregate_id   text,
    sequence       bigint,
    event_type     text,
    event_version  text,
    event_id       uuid,
    recorded_at    timestamptz,
    payload        json,
    metadata       json
) RETURNS bytea
    LANGUAGE sql STABLE STRICT PARALLEL SAFE AS
$$
SELECT sha256(
    prev_hash
    || '\x01'::bytea
    || int4send(octet_length(convert_to(aggregate_type, 'UTF8'))) || convert_to(aggregate_type, 'UTF8')
    || int4send(octet_length(convert_to(aggregate_id, 'UTF8'))) || convert_to(aggregate_id, 'UTF8')
    || int8send(sequence)
    || int4send(octet_length(convert_to(event_type, 'UTF8'))) || convert_to(event_type, 'UTF8')
    || int4send(octet_length(convert_to(event_version, 'UTF8'))) || convert_to(event_version, 'UTF8')
    || uuid_send(event_id)
    || int8send((extract(epoch FROM recorded_at) * 1000000)::bigint)
    || int4send(octet_length(convert_to(payload::text, 'UTF8'))) || convert_to(payload::text, 'UTF8')
    || int4send(octet_length(convert_to(metadata::text, 'UTF8'))) || convert_to(metadata::text, 'UTF8')
)
$$;

-- The hash must cover the row as it is stored, so this trigger must fire after every
-- BEFORE INSERT trigger that changes the row: triggers of one kind fire in name order, and
-- `events_seal_hash_chain` sorts after `events_assign_event_id` (event id, metadata) and
-- `events_capture_idempotency_key` (metadata). A later BEFORE INSERT trigger that changes
-- the row must be named to sort before this one.
--
-- The predecessor is committed (event n + 1 is appended only after n committed) or was
-- inserted earlier in this transaction, possibly by the same statement; either way this
-- trigger sees it. A missing predecessor is refused: the chain would have a hole.
CREATE FUNCTION events_seal_hash_chain() RETURNS trigger
    LANGUAGE plpgsql AS
$$
DECLARE
    v_prev bytea;
BEGIN
    IF NEW.sequence = 1 THEN
        v_prev := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
    ELSE
        SELECT hash INTO v_prev
          FROM events
         WHERE aggregate_type = NEW.aggregate_type
           AND aggregate_id = NEW.aggregate_id
           AND sequence = NEW.sequence - 1;
        IF v_prev IS NULL THEN
            RAISE EXCEPTION 'hash chain: % % has no event % before sequence %',
                NEW.aggregate_type, NEW.aggregate_id, NEW.sequence - 1, NEW.sequence
                USING ERRCODE = 'foreign_key_violation';
        END IF;
    END IF;
    NEW.hash := events_chain_hash(v_prev, NEW.aggregate_type, NEW.aggregate_id, NEW.sequence,
                                  NEW.event_type, NEW.event_version, NEW.event_id,
                                  NEW.recorded_at, NEW.payload, NEW.metadata);
    RETURN NEW;
END
$$;

-- Existing events, stream by stream in sequence order. The append-only trigger forbids the
-- UPDATE, so it is off for this transaction only (DDL takes the table lock until commit).
ALTER TABLE events DISABLE TRIGGER events_append_only;
DO
$$
DECLARE
    v_event events%ROWTYPE;
    v_type  text;
    v_id    text;
    v_last  bigint;
    v_prev  bytea;
BEGIN
    FOR v_event IN
        SELECT * FROM events ORDER BY aggregate_type, aggregate_id, sequence
    LOOP
        IF v_type IS DISTINCT FROM v_event.aggregate_type OR v_id IS DISTINCT FROM v_event.aggregate_id THEN
            v_type := v_event.aggregate_type;
            v_id := v_event.aggregate_id;
            v_last := 0;
            v_prev := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
        END IF;
        -- Sealing a stream with a hole would vouch for it: fail the migration instead.
        IF v_event.sequence <> v_last + 1 THEN
            RAISE EXCEPTION 'hash chain: % % has no event % before sequence %',
                v_event.aggregate_type, v_event.aggregate_id, v_last + 1, v_event.sequence
                USING ERRCODE = 'foreign_key_violation';
        END IF;
        v_last := v_event.sequence;
        v_prev := events_chain_hash(v_prev, v_event.aggregate_type, v_event.aggregate_id,
                                    v_event.sequence, v_event.event_type, v_event.event_version,
                                    v_event.event_id, v_event.recorded_at, v_event.payload,
                                    v_event.metadata);
        UPDATE events
           SET hash = v_prev
         WHERE aggregate_type = v_event.aggregate_type
           AND aggregate_id = v_event.aggregate_id
           AND sequence = v_event.sequence;
    END LOOP;
END
$$;
ALTER TABLE events ENABLE TRIGGER events_append_only;

ALTER TABLE events ALTER COLUMN hash SET NOT NULL;

CREATE TRIGGER events_seal_hash_chain
    BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION events_seal_hash_chain();

-- The audit trail's global log filters by correlation id (every event of one business flow)
-- and by time; without these it would scan the whole store.
CREATE INDEX events_correlation_id ON events ((metadata ->> 'correlation_id'));
CREATE INDEX events_recorded_at ON events USING brin (recorded_at);
