-- Issue 10: a read model survives any event that reaches it.

-- Events a projection could not apply (projections/quarantine.py): the follower skips
-- each one, lists it here, and goes on. The model lacks its effect (the issue's row may
-- be missing or stale) until a rebuild after a fix applies it; a rebuild that swaps in
-- replaces the model's list with what it could not apply itself.
CREATE TABLE projection_failures (
    projection text NOT NULL,
    position bigint NOT NULL,
    issue_id uuid NOT NULL,
    version bigint NOT NULL,
    error text NOT NULL,
    failed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, position)
);
CREATE INDEX projection_failures_latest_idx ON projection_failures (projection, failed_at DESC);

-- What GET /ready judges a follower by: when the active one last read the log
-- (`checked_at`, even when it found nothing), and the error that made its last batch
-- fail and be tried again (cleared by the next batch that commits).
ALTER TABLE projection_positions
    ADD COLUMN checked_at timestamptz,
    ADD COLUMN last_error text,
    ADD COLUMN failed_at timestamptz;
