-- Group commit: many commands' events appended in one transaction, each command all or
-- nothing, with its own outcome (docs/adr/0010-group-commit.md; the caller is
-- event_store::append, the batching is the command API's).
--
-- The arguments are parallel arrays, one element per event. `p_command` numbers the
-- commands of the batch; a command's events are consecutive and in sequence order (a run
-- of equal numbers is one command).
-- One row is returned per command, in command order: the sequences, event ids and global
-- positions of its events, or the SQLSTATE and message of why none was appended. A command
-- whose insert fails (`23505`: another command holds the stream position or the
-- idempotency key) is rolled back to its own savepoint (the exception block below), and the
-- others go on; the transaction commits the rest.
--
-- The appender marker of migration 0012 is taken here, once, before the first savepoint:
-- taken inside one, it would be released when that command rolls back, and the next
-- command's insert would then have to prove that no later transaction has committed
-- events. So the call must be the first write of its transaction.
--
-- Payloads and metadata arrive as jsonb and are stored as json: the same text the
-- single-event insert of postgres-es stores (it binds jsonb too), so the hash chain and
-- every reader see no difference between the two paths.
CREATE FUNCTION append_events(
    p_command        integer[],
    p_aggregate_type text[],
    p_aggregate_id   text[],
    p_sequence       bigint[],
    p_event_type     text[],
    p_event_version  text[],
    p_payload        jsonb[],
    p_metadata       jsonb[]
) RETURNS TABLE (
    command          integer,
    sequences        bigint[],
    event_ids        uuid[],
    global_positions bigint[],
    error_code       text,
    error_message    text
)
    LANGUAGE plpgsql AS
$$
DECLARE
    v_count integer := coalesce(cardinality(p_command), 0);
    v_first integer := 1;
    v_last  integer;
BEGIN
    IF current_setting('keel.events_appender', true) IS DISTINCT FROM 'on' THEN
        IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
            RAISE EXCEPTION 'append_events must be the first write of its transaction'
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        -- The key of migration 0012 and event_store::log::APPENDER_LOCK.
        PERFORM pg_advisory_xact_lock_shared(1802268519, 1);
        PERFORM set_config('keel.events_appender', 'on', true);
    END IF;

    WHILE v_first <= v_count LOOP
        -- This command's events: elements v_first .. v_last.
        v_last := v_first;
        WHILE v_last < v_count AND p_command[v_last + 1] = p_command[v_first] LOOP
            v_last := v_last + 1;
        END LOOP;
        command := p_command[v_first];
        sequences := NULL;
        event_ids := NULL;
        global_positions := NULL;
        error_code := NULL;
        error_message := NULL;
        BEGIN
            WITH inserted AS (
                INSERT INTO events AS e (aggregate_type, aggregate_id, sequence, event_type,
                                         event_version, payload, metadata)
                SELECT t.aggregate_type, t.aggregate_id, t.sequence, t.event_type,
                       t.event_version, t.payload::json, t.metadata::json
                  FROM unnest(p_aggregate_type[v_first:v_last], p_aggregate_id[v_first:v_last],
                              p_sequence[v_first:v_last], p_event_type[v_first:v_last],
                              p_event_version[v_first:v_last], p_payload[v_first:v_last],
                              p_metadata[v_first:v_last])
                       WITH ORDINALITY
                       AS t(aggregate_type, aggregate_id, sequence, event_type, event_version,
                            payload, metadata, ordinal)
                 ORDER BY t.ordinal
                RETURNING e.sequence, e.event_id, e.global_position
            )
            SELECT array_agg(x.sequence ORDER BY x.sequence),
                   array_agg(x.event_id ORDER BY x.sequence),
                   array_agg(x.global_position ORDER BY x.sequence)
              INTO sequences, event_ids, global_positions
              FROM inserted AS x;
        EXCEPTION WHEN OTHERS THEN
            sequences := NULL;
            event_ids := NULL;
            global_positions := NULL;
            error_code := SQLSTATE;
            error_message := SQLERRM;
        END;
        RETURN NEXT;
        v_first := v_last + 1;
    END LOOP;
END
$$;
