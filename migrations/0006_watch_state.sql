-- The detector keeps each order's folded state, so that events arriving in order are
-- applied to it instead of folding every event again on every visit (app/detection.py).
ALTER TABLE order_watch
    ADD COLUMN state jsonb,                              -- NULL: fold from events next visit
    ADD COLUMN fold_version integer NOT NULL DEFAULT 0,  -- domain.order.FOLD_VERSION
    ADD COLUMN event_ids text[] NOT NULL DEFAULT '{}',   -- every event id seen (duplicates)
    ADD COLUMN stored_events integer NOT NULL DEFAULT 0; -- length of events

UPDATE order_watch SET
    stored_events = jsonb_array_length(events),
    event_ids = ARRAY(SELECT e ->> 'event_id' FROM jsonb_array_elements(events) AS e);
