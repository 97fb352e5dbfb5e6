-- The detector's state (app/detection.py).

-- What is known of each order: its events (deduplicated by event_id; the state is folded
-- from them in occurred_at order), since when each open issue's condition has been clear,
-- and when to look at the order again (its durable timer).
CREATE TABLE order_watch (
    order_id text PRIMARY KEY,
    events jsonb NOT NULL,
    clear_since jsonb NOT NULL DEFAULT '{}',
    next_check_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- Due timers, claimed with FOR UPDATE SKIP LOCKED by any detector replica.
CREATE INDEX order_watch_due_idx ON order_watch (next_check_at)
    WHERE next_check_at IS NOT NULL;

-- Order events that could not be accepted, for an operator to list and replay.
CREATE TABLE dead_letters (
    id bigserial PRIMARY KEY,
    source text NOT NULL,          -- nats | http
    event_id text,
    reason text NOT NULL,
    payload bytea NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

-- Each customer contact, and whether the inbox had an issue open for the order then
-- (the detection KPI: share of contacts already detected, and how many minutes earlier).
CREATE TABLE support_contacts (
    event_id text PRIMARY KEY,
    order_id text NOT NULL,
    contacted_at timestamptz NOT NULL,
    detected boolean NOT NULL,
    first_detected_at timestamptz
);
CREATE INDEX support_contacts_at_idx ON support_contacts (contacted_at);
