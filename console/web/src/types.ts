// The shapes the console reads: the audit trail (/audit/…) and the console API
// (/console/api/…). Timestamps are RFC 3339 strings.

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

// --- /audit -----------------------------------------------------------------------------

export interface AuditEvent {
  aggregate_type: string;
  aggregate_id: string;
  sequence: number;
  event_type: string;
  event_version: string;
  event_id: string;
  transaction_id: number;
  global_position: number;
  recorded_at: string;
  payload: Json;
  metadata: Record<string, Json>;
  hash: string | null;
  personal_data?: Json;
}

export interface StreamHistoryPage {
  aggregate_type: string;
  aggregate_id: string;
  version: number;
  items: AuditEvent[];
  next_cursor: string | null;
}

export interface AuditLogPage {
  items: AuditEvent[];
  next_cursor: string | null;
  /** Where the page ends, also on the last page (null only for an empty log). */
  resume_cursor: string | null;
}

export interface AggregateStateView {
  aggregate_type: string;
  aggregate_id: string;
  version: number;
  recorded_at: string;
  current_version: number;
  state: Json;
}

export interface Mismatch {
  aggregate_type: string;
  aggregate_id: string;
  sequence: number;
  event_id: string;
  global_position: number;
  recorded_at: string;
  reason: 'hash_mismatch' | 'hash_missing' | 'predecessor_missing';
  expected_hash: string | null;
  stored_hash: string | null;
}

export interface StreamVerification {
  aggregate_type: string;
  aggregate_id: string;
  verified: number;
  ok: boolean;
  first_mismatch: Mismatch | null;
}

// --- /console/api -----------------------------------------------------------------------

export interface OverviewBucket {
  at: string;
  events: number;
  commands: number;
}

export interface Overview {
  now: string;
  bucket_seconds: number;
  buckets: OverviewBucket[];
  log_head: number;
}

export type ProjectionName = 'orders' | 'stock' | 'payments';
export const PROJECTIONS: ProjectionName[] = ['orders', 'stock', 'payments'];

export interface Rebuild {
  source: 'store' | 'kafka';
  running: boolean;
  events_read: number;
  events_applied: number;
}

export interface ProjectionStatus {
  projection: ProjectionName;
  events_in_store: number;
  events_applied: number;
  lag_events: number;
  lag_seconds: number | null;
  last_checkpoint_at: string | null;
  aggregates: number;
  parked_aggregates: number;
  retrying_aggregates: number;
  dead_letters_unresolved: number;
  rebuild: Rebuild | null;
}

export interface ProjectionsResponse {
  sampled_at: string;
  log_head: number;
  projections: ProjectionStatus[];
}

export interface DeadLetter {
  id: number;
  projection: ProjectionName;
  topic: string;
  kafka_partition: number;
  kafka_offset: number;
  aggregate_type: string;
  aggregate_id: string;
  sequence: number;
  reason: 'poison' | 'parked';
  error: string;
  attempts: number;
  dead_lettered_at: string;
  resolution: null | 'retried' | 'skipped';
  resolved_by: string | null;
  resolved_at: string | null;
  resolution_reason: string | null;
}

export interface DeadLettersResponse {
  dead_letters: DeadLetter[];
}

export interface DeadLetterAnswer {
  dead_letters: number[];
  requeued: number;
  actor: string;
}

export const SAGA_STATUSES = [
  'reserving',
  'authorizing',
  'completing',
  'completed',
  'compensating',
  'cancelled',
  'refunding',
  'refunded',
  'failed',
] as const;

export interface FlowSummary {
  order_id: string;
  payment_id: string;
  correlation_id: string;
  status: string;
  stuck: boolean;
  deadline: string | null;
  started_at: string;
  updated_at: string;
  pending_commands: number;
  last_error: string | null;
}

export interface FlowsResponse {
  flows: FlowSummary[];
  next_cursor: string | null;
  counts: Record<string, number>;
}

export interface EventStep {
  at: string;
  kind: 'event';
  event_id: string;
  event_type: string;
}

export interface CommandStep {
  at: string;
  kind: 'command';
  command_id: number;
  step: string;
  command: Json;
  /** The event that caused the command (its `X-Causation-Id`), when the API says. */
  causation_id?: string;
  status: 'pending' | 'accepted' | 'rejected' | 'superseded';
  attempts: number;
  last_error: string | null;
  completed_at: string | null;
}

export type SagaStep = EventStep | CommandStep;

export interface FlowDetail {
  flow: FlowSummary;
  state: Json;
  steps: SagaStep[];
}
