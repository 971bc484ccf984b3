-- The event store. The first seven columns are the ones postgres-es reads and writes;
-- the rest are filled by defaults and a trigger so that every append, whoever makes it,
-- gets an event id, its transaction and a global position in the same transaction.

CREATE TABLE events
(
    aggregate_type  text    NOT NULL,
    aggregate_id    text    NOT NULL,
    sequence        bigint  NOT NULL CHECK (sequence >= 1),
    event_type      text    NOT NULL,
    event_version   text    NOT NULL,
    payload         json    NOT NULL,
    metadata        json    NOT NULL,
    -- Unique per event (cqrs-es hands one metadata map to every event of a command).
    event_id        uuid    NOT NULL,
    -- The appending transaction. Readers that follow the global order only read below
    -- the oldest transaction still in flight, so an event that commits late is never
    -- stepped over (see docs/adr/0002-global-position.md).
    transaction_id  xid8    NOT NULL DEFAULT pg_current_xact_id(),
    global_position bigint  GENERATED ALWAYS AS IDENTITY,
    recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

CREATE UNIQUE INDEX events_event_id ON events (event_id);
-- Commit order for global readers: (transaction_id, global_position).
CREATE UNIQUE INDEX events_commit_order ON events (transaction_id, global_position);

CREATE TABLE snapshots
(
    aggregate_type   text   NOT NULL,
    aggregate_id     text   NOT NULL,
    last_sequence    bigint NOT NULL CHECK (last_sequence >= 0),
    current_snapshot bigint NOT NULL CHECK (current_snapshot >= 0),
    payload          json   NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);

-- Gives each event its own id and records it in the metadata too, so that the event
-- envelope cqrs-es loads carries it.
CREATE FUNCTION events_assign_event_id() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    NEW.event_id := gen_random_uuid();
    NEW.metadata := (NEW.metadata::jsonb || jsonb_build_object('event_id', NEW.event_id))::json;
    RETURN NEW;
END
$$;

CREATE TRIGGER events_assign_event_id
    BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION events_assign_event_id();

-- The log is append-only: history is corrected by new events, never by rewriting.
CREATE FUNCTION events_reject_change() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    RAISE EXCEPTION 'events are append-only: % on events is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_reject_change();
