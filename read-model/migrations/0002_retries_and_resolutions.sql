-- Failures that may pass are retried off the hot path (ADR 0007).
--
-- An aggregate whose event failed for a reason that may pass (a row lock held too long, a
-- deadlock, state another topic has not delivered yet) is *retrying*: its checkpoint
-- carries when to try again, how many attempts were made and the last error, and its
-- events from the failing one on wait in `retry_events`, in order, while every other
-- aggregate of the projection keeps being applied. The projector moves past their Kafka
-- offsets once they are held here, so a restart neither loses nor re-applies them.

ALTER TABLE read_model.checkpoints
    ADD COLUMN retry_at       timestamptz,
    ADD COLUMN retry_attempts integer NOT NULL DEFAULT 0 CHECK (retry_attempts >= 0),
    ADD COLUMN retry_error    text;

-- The projector's sweep: the retrying aggregates of one projection that are due.
CREATE INDEX checkpoints_retry_due ON read_model.checkpoints (projection, retry_at)
    WHERE retry_at IS NOT NULL;

-- The held messages, raw as received (decoded again when retried).
CREATE TABLE read_model.retry_events
(
    projection      text        NOT NULL,
    topic           text        NOT NULL,
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    -- NULL for a message put back by an operator that has never decoded.
    sequence        bigint,
    message_key     bytea,
    payload         bytea,
    headers         jsonb       NOT NULL DEFAULT '{}',
    held_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, topic, kafka_partition, kafka_offset)
);

CREATE INDEX retry_events_by_aggregate
    ON read_model.retry_events (projection, aggregate_type, aggregate_id, sequence);

-- An operator's answer to a dead letter: retried (its aggregate's held-back messages are
-- applied again) or skipped (with the reason). Both are recorded with who did it.
ALTER TABLE read_model.dead_letters
    ADD COLUMN resolution        text CHECK (resolution IN ('retried', 'skipped')),
    ADD COLUMN resolved_at       timestamptz,
    ADD COLUMN resolved_by       text,
    ADD COLUMN resolution_reason text,
    ADD CONSTRAINT dead_letters_resolution_complete
        CHECK ((resolution IS NULL) = (resolved_at IS NULL)
           AND (resolution IS NULL) = (resolved_by IS NULL));
