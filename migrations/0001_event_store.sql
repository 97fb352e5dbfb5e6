-- The event store of the eventsourcing library (PostgreSQL module, application "inbox"),
-- the same DDL the library would run with CREATE_TABLE=y, which we keep off outside tests
-- so that schema changes happen only here, once, in order.
CREATE TYPE stored_event_uuid AS (
    originator_id uuid,
    originator_version bigint,
    topic text,
    state bytea
);

CREATE TABLE inbox_events (
    originator_id uuid NOT NULL,
    originator_version bigint NOT NULL,
    topic text,
    state bytea,
    notification_id bigserial,
    PRIMARY KEY (originator_id, originator_version)
) WITH (
    autovacuum_enabled = true,
    autovacuum_vacuum_threshold = 100000000,
    autovacuum_vacuum_scale_factor = 0.5,
    autovacuum_analyze_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.01
);

-- The global position followers read after (relay, projections, GET /api/events).
CREATE UNIQUE INDEX inbox_events_notification_id_idx ON inbox_events (notification_id ASC);
