-- The read models. They live in their own schema, never next to the event store's tables,
-- and everything here can be dropped and rebuilt from the events.
--
-- Every projection writes only its own tables; query-api reads them. Money is integer
-- minor units plus an ISO currency code.

CREATE SCHEMA IF NOT EXISTS read_model;

-- Exactly-once effect. For each projection and each source aggregate: the last sequence
-- applied. An event is applied only if its sequence is above it, in the same transaction
-- that updates the read model and this row. `parked_by` names the dead letter after which
-- the aggregate's later events are parked instead of applied across the gap.
CREATE TABLE read_model.checkpoints
(
    projection     text        NOT NULL,
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    last_sequence  bigint      NOT NULL CHECK (last_sequence >= 0),
    parked_by      bigint,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, aggregate_type, aggregate_id)
);

-- Poison messages (and the later messages of an aggregate parked behind one), with the
-- raw message and where it came from. Rows with `published_at IS NULL` are still to be
-- copied to the projection's dead-letter topic (this table is that topic's outbox).
CREATE TABLE read_model.dead_letters
(
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    projection      text        NOT NULL,
    topic           text        NOT NULL,
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    message_key     bytea,
    payload         bytea,
    headers         jsonb       NOT NULL DEFAULT '{}',
    aggregate_type  text,
    aggregate_id    text,
    sequence        bigint,
    reason          text        NOT NULL CHECK (reason IN ('poison', 'parked')),
    error           text        NOT NULL,
    attempts        integer     NOT NULL CHECK (attempts >= 0),
    dead_lettered_at timestamptz NOT NULL DEFAULT now(),
    published_at    timestamptz,
    -- A redelivered poison message is recorded once.
    UNIQUE (projection, topic, kafka_partition, kafka_offset)
);

CREATE INDEX dead_letters_unpublished ON read_model.dead_letters (projection, id)
    WHERE published_at IS NULL;

-- Projection `orders` (topics order, inventory, payment) ---------------------------------

CREATE TABLE read_model.order_view
(
    order_id            uuid        PRIMARY KEY,
    customer_id         uuid        NOT NULL,
    status              text        NOT NULL
        CHECK (status IN ('draft', 'placed', 'confirmed', 'shipped', 'delivered', 'cancelled')),
    currency            text        NOT NULL,
    total_minor         bigint      NOT NULL,
    line_count          integer     NOT NULL CHECK (line_count >= 0),
    cancellation_reason text,
    tracking_reference  text,
    created_at          timestamptz NOT NULL,
    placed_at           timestamptz,
    confirmed_at        timestamptz,
    cancelled_at        timestamptz,
    shipped_at          timestamptz,
    delivered_at        timestamptz,
    updated_at          timestamptz NOT NULL,
    -- Sequence of the order's own stream: what read-your-writes compares with.
    version             bigint      NOT NULL CHECK (version >= 1)
);

CREATE TABLE read_model.order_view_lines
(
    order_id         uuid    NOT NULL REFERENCES read_model.order_view ON DELETE CASCADE,
    sku              text    NOT NULL,
    -- Lines keep the order in which they were added.
    position         integer NOT NULL,
    quantity         bigint  NOT NULL CHECK (quantity > 0),
    unit_price_minor bigint  NOT NULL CHECK (unit_price_minor >= 0),
    line_total_minor bigint  NOT NULL,
    PRIMARY KEY (order_id, sku)
);

-- Stock reservations for an order, from the inventory topic. Keyed by order and SKU and
-- not tied to order_view: the inventory topic may be read before the order's.
CREATE TABLE read_model.order_reservations
(
    order_id   uuid        NOT NULL,
    sku        text        NOT NULL,
    quantity   bigint      NOT NULL CHECK (quantity > 0),
    status     text        NOT NULL CHECK (status IN ('reserved', 'released', 'committed')),
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (order_id, sku)
);

-- Payment state for an order, from the payment topic (same reasoning as above).
CREATE TABLE read_model.order_payments
(
    payment_id     uuid        PRIMARY KEY,
    order_id       uuid        NOT NULL,
    status         text        NOT NULL
        CHECK (status IN ('authorized', 'declined', 'captured', 'voided', 'refunded')),
    currency       text        NOT NULL,
    amount_minor   bigint      NOT NULL,
    captured_minor bigint      NOT NULL DEFAULT 0,
    refunded_minor bigint      NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);

CREATE INDEX order_payments_by_order ON read_model.order_payments (order_id, created_at, payment_id);

-- Orders by customer: the narrow listing, newest first.
CREATE TABLE read_model.customer_orders
(
    order_id    uuid        PRIMARY KEY,
    customer_id uuid        NOT NULL,
    status      text        NOT NULL,
    currency    text        NOT NULL,
    total_minor bigint      NOT NULL,
    line_count  integer     NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    version     bigint      NOT NULL
);

CREATE INDEX customer_orders_listing
    ON read_model.customer_orders (customer_id, created_at DESC, order_id DESC);
CREATE INDEX customer_orders_by_status
    ON read_model.customer_orders (customer_id, status, created_at DESC, order_id DESC);

-- Projection `stock` (topic inventory) ----------------------------------------------------

CREATE TABLE read_model.stock_levels
(
    sku        text        PRIMARY KEY,
    on_hand    bigint      NOT NULL CHECK (on_hand >= 0),
    reserved   bigint      NOT NULL CHECK (reserved >= 0),
    -- The domain keeps on_hand >= reserved; an event stream that breaks it is poison.
    available  bigint      GENERATED ALWAYS AS (on_hand - reserved) STORED CHECK (available >= 0),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    version    bigint      NOT NULL CHECK (version >= 1)
);

-- Projection `payments` (topic payment) ----------------------------------------------------

CREATE TABLE read_model.payments
(
    payment_id         uuid        PRIMARY KEY,
    order_id           uuid        NOT NULL,
    status             text        NOT NULL
        CHECK (status IN ('authorized', 'declined', 'captured', 'voided', 'refunded')),
    currency           text        NOT NULL,
    amount_minor       bigint      NOT NULL,
    captured_minor     bigint      NOT NULL DEFAULT 0,
    refunded_minor     bigint      NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0),
    authorization_code text,
    decline_reason     text,
    void_reason        text,
    -- [{refund_id, amount_minor, reason, refunded_at}] in the order they happened.
    refunds            jsonb       NOT NULL DEFAULT '[]',
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    version            bigint      NOT NULL CHECK (version >= 1),
    CHECK (refunded_minor <= captured_minor)
);

CREATE INDEX payments_by_order ON read_model.payments (order_id, created_at, payment_id);
