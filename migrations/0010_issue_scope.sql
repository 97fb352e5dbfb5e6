-- Per-market scopes (CONTRACT §6): where each issue and each support contact belongs.

-- Each issue's vertical and country, which never change after it is raised. The event
-- store writes the row in the transaction of the issue's first event
-- (adapters/eventstore.py RequestRecorder), so any reader of an issue's events finds it:
-- GET /api/events and the histories filter the event store by it directly, never waiting
-- on a read model that may lag behind.
CREATE TABLE issue_scope (
    issue_id uuid PRIMARY KEY,
    vertical text NOT NULL,
    country text NOT NULL
);

-- The issues raised before: from each one's stored first event (Detected, version 1),
-- the source of truth, complete at this point. Not from inbox_issues: a read model may be
-- behind, skipping quarantined events, or mid-rebuild, and an issue it misses would stay
-- invisible to every scoped reader of the log (its row is written with version 1 only).
INSERT INTO issue_scope (issue_id, vertical, country)
SELECT e.originator_id, d.vertical, d.country
FROM inbox_events AS e,
    LATERAL (SELECT convert_from(e.state, 'UTF8')::jsonb AS state) AS s,
    LATERAL (SELECT s.state ->> 'vertical' AS vertical, s.state ->> 'country' AS country) AS d
WHERE e.originator_version = 1 AND d.vertical IS NOT NULL AND d.country IS NOT NULL
ON CONFLICT DO NOTHING;

-- Support contacts, counted by the detection KPI for the orders in a caller's scope: the
-- contact's own vertical and country (its order's). NULL for a contact of before this
-- migration whose order is no longer known: counted for unscoped callers only.
ALTER TABLE support_contacts ADD COLUMN vertical text, ADD COLUMN country text;

UPDATE support_contacts AS c
SET vertical = coalesce(e.body ->> 'vertical', i.vertical),
    country = coalesce(e.body ->> 'country', i.country)
FROM support_contacts AS c2
LEFT JOIN order_events AS e ON e.order_id = c2.order_id AND e.event_id = c2.event_id
LEFT JOIN LATERAL (
    SELECT vertical, country FROM inbox_issues WHERE order_id = c2.order_id LIMIT 1
) AS i ON TRUE
WHERE c.event_id = c2.event_id;
