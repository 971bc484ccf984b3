-- The W3C trace context (`traceparent`) of what caused each queued command: the causing
-- event's, from its metadata, or for a command decided on a refusal or a deadline, the
-- flow's latest. The dispatcher sends commands later, outside the consumer's span, so
-- without it every command after the first would start a trace of its own. NULL when the
-- cause carried none (and for rows queued before this migration).
ALTER TABLE saga_commands ADD COLUMN traceparent text;
