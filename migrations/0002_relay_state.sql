-- Where each outbox relay stands: one row per target stream. The relay advances
-- `position` only past events JetStream acknowledged; `status` turns to 'halted' (with
-- the reason and the position of the event) when an event cannot be mapped, so that an
-- operator sees it in GET /ready and here.
CREATE TABLE relay_state (
    stream text PRIMARY KEY,
    position bigint NOT NULL DEFAULT 0 CHECK (position >= 0),
    status text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'halted')),
    halted_at bigint,
    error text,
    published bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
