-- The order fulfilment saga's own state (see command-api/src/saga). Written only by the
-- saga; the event store tables are never touched by it except through the command API.

-- One saga instance per placed order. `state` is the whole instance (machine.rs
-- `Fulfilment`); the other columns are copies for lookups and the deadline sweep.
CREATE TABLE saga_instances
(
    order_id       uuid        PRIMARY KEY,
    -- Payment events carry only the payment id; this finds their saga.
    payment_id     uuid        NOT NULL UNIQUE,
    correlation_id uuid        NOT NULL,
    status         text        NOT NULL,
    deadline       timestamptz,
    state          jsonb       NOT NULL,
    started_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX saga_instances_deadline ON saga_instances (deadline) WHERE deadline IS NOT NULL;
CREATE INDEX saga_instances_correlation ON saga_instances (correlation_id);

-- Commands the saga decided to send, written in the transaction that decided them, then
-- sent by the dispatcher until the command API accepts or refuses them. The idempotency
-- key is derived from the causing event and the step, so a redelivered event cannot add a
-- second row and a resent command cannot act twice.
CREATE TABLE saga_commands
(
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id        uuid        NOT NULL REFERENCES saga_instances (order_id),
    idempotency_key text        NOT NULL UNIQUE,
    causation_id    uuid        NOT NULL,
    command         jsonb       NOT NULL,
    status          text        NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'accepted', 'rejected', 'superseded')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- Problem code (or transport error) of the last failed attempt, or of the refusal.
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz
);

CREATE INDEX saga_commands_pending ON saga_commands (next_attempt_at, order_id) WHERE status = 'pending';
CREATE INDEX saga_commands_by_order ON saga_commands (order_id, id);

-- Last event sequence the saga consumed per source aggregate, advanced in the transaction
-- that applied the event: an event is acted on only if it is the next one (exactly-once
-- effect over at-least-once delivery), as the projectors do.
CREATE TABLE saga_checkpoints
(
    aggregate_type text   NOT NULL,
    aggregate_id   text   NOT NULL,
    last_sequence  bigint NOT NULL CHECK (last_sequence >= 1),
    PRIMARY KEY (aggregate_type, aggregate_id)
);

-- Events that moved a saga, by event id: a second guard against acting twice (should a
-- checkpoint ever be reset) and the saga's own audit of why it did what it did.
CREATE TABLE saga_processed_events
(
    event_id     uuid        PRIMARY KEY,
    order_id     uuid        NOT NULL REFERENCES saga_instances (order_id),
    event_type   text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX saga_processed_events_by_order ON saga_processed_events (order_id, processed_at);
