-- The detector keeps each order's folded state, so that events arriving in order are
-- applied to it instead of folding every event again on every visit (app/detection.py),
-- and the events themselves in a table of their own: a new event is one insert, a
-- repeated event id is a conflict that changes nothing, and the watch row stays small.
CREATE TABLE order_events (
    order_id text NOT NULL,
    event_id text NOT NULL,
    body jsonb NOT NULL,
    PRIMARY KEY (order_id, event_id)
);

INSERT INTO order_events (order_id, event_id, body)
SELECT w.order_id, e ->> 'event_id', e
FROM order_watch AS w, jsonb_array_elements(w.events) AS e
ON CONFLICT DO NOTHING;

ALTER TABLE order_watch
    DROP COLUMN events,
    ADD COLUMN state jsonb,                              -- NULL: fold from the events
    ADD COLUMN fold_version integer NOT NULL DEFAULT 0;  -- domain.order.FOLD_VERSION

-- Retention (Detector.sweep): orders untouched for long, old contacts and dead letters.
CREATE INDEX order_watch_updated_idx ON order_watch (updated_at);
CREATE INDEX dead_letters_received_idx ON dead_letters (received_at);

-- Customer contacts whose escalations have not all landed yet (a conflict, the event
-- store unavailable): the next look at the order passes them again.
ALTER TABLE order_watch ADD COLUMN pending_contacts jsonb NOT NULL DEFAULT '[]';
