-- Transactional outbox: every appended event is queued for publication by a trigger, in
-- the appending transaction itself, so there is no dual write. The relay deletes a row
-- only after the broker has acknowledged the event (see docs/adr/0002-outbox-and-global-position.md).

CREATE TABLE outbox
(
    global_position bigint      PRIMARY KEY,
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    sequence        bigint      NOT NULL,
    -- Relay instances split the work by shard; one shard is published by one relay at a
    -- time, which keeps every aggregate's events in sequence order on the wire.
    shard           smallint    NOT NULL,
    recorded_at     timestamptz NOT NULL,
    -- Failed publish attempts so far; for visibility, not for giving up.
    attempts        integer     NOT NULL DEFAULT 0
);

CREATE INDEX outbox_by_shard ON outbox (shard, global_position);

-- 64 must match OUTBOX_SHARDS in command-api/src/outbox/.
CREATE FUNCTION events_enqueue_for_publication() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    INSERT INTO outbox (global_position, aggregate_type, aggregate_id, sequence, shard, recorded_at)
    VALUES (NEW.global_position, NEW.aggregate_type, NEW.aggregate_id, NEW.sequence,
            ((hashtextextended(NEW.aggregate_type || '/' || NEW.aggregate_id, 0) % 64 + 64) % 64)::smallint,
            NEW.recorded_at);
    RETURN NULL;
END
$$;

CREATE TRIGGER events_enqueue_for_publication
    AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION events_enqueue_for_publication();

-- Relay instances announce themselves so that each takes a fair share of the shards.
CREATE TABLE outbox_relays
(
    relay_id   uuid        PRIMARY KEY,
    last_seen  timestamptz NOT NULL,
    shards     smallint[]  NOT NULL DEFAULT '{}'
);
