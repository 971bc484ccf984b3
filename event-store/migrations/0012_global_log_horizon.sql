-- Readers of the global log wait only for transactions that append events, not for every
-- transaction on the server (see docs/adr/0008-global-log-horizon.md and
-- event-store/src/log.rs, which computes the horizon from this marker).
--
-- The marker is a transaction-level advisory lock in shared mode, key ("klog", 1): pg_locks
-- shows it, with the holder's virtual transaction id, from the moment it is taken until the
-- transaction ends, and the reader joins it to the holder's own `transactionid` lock to learn
-- which xid is an appender's. Nothing may take this lock exclusively: it would block appends.
-- The key must equal `event_store::log::APPENDER_LOCK`.
--
-- A statement trigger fires before the statement evaluates any row's defaults, so a
-- transaction whose first write is an append is marked before `pg_current_xact_id()` gives
-- it an xid: a reader that did not see the marker computed its horizon before that xid
-- existed, and the xid will be above it. A transaction that already had an xid when it first
-- appended (it wrote something else first, or its earlier append was rolled back to a
-- savepoint, which also releases the lock) was not marked while a reader may have stepped
-- past its xid; it may append only if no event of a later transaction has committed (then no
-- reader can have stepped past it), and only in READ COMMITTED, where that check sees every
-- commit up to now.
--
-- The transaction-local setting `keel.events_appender` records "marked" so that later
-- appends of the same transaction (postgres-es inserts one statement per event) skip all of
-- this; it is reset with the lock, at the end of the transaction or of a rolled-back
-- savepoint.
CREATE FUNCTION events_mark_appender() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    IF current_setting('keel.events_appender', true) = 'on' THEN
        RETURN NULL;
    END IF;
    -- 1802268519 = 0x6b6c6f67, "klog". Taken before the check below, so that a reader either
    -- sees the marker or ran before it and is covered by the check.
    PERFORM pg_advisory_xact_lock_shared(1802268519, 1);
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        IF current_setting('transaction_isolation') <> 'read committed' THEN
            RAISE EXCEPTION 'events must be appended before any other write of a % transaction', current_setting('transaction_isolation')
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'Append the events first, or use READ COMMITTED.';
        END IF;
        IF EXISTS (SELECT 1 FROM events WHERE transaction_id > pg_current_xact_id()) THEN
            RAISE EXCEPTION 'events must be appended before any other write of the transaction: a later transaction''s events have committed and readers may have read past this one'
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'Append the events first (or in a transaction of their own) and retry.';
        END IF;
    END IF;
    PERFORM set_config('keel.events_appender', 'on', true);
    RETURN NULL;
END
$$;

CREATE TRIGGER events_mark_appender
    BEFORE INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_mark_appender();
