-- Idempotency keys of commands (the Idempotency-Key header, app/http/issues.py).
-- A command that was stored has its row written by the event store's own insert, in the
-- same transaction as its event (adapters/eventstore.py RequestRecorder): the key and the
-- effect land together or not at all. A command refused with a 4xx has its answer kept
-- here too (status_code, body). A row past its expires_at (set at insert from the window
-- of the process that wrote it) is ignored and swept.
CREATE TABLE command_requests (
    key text PRIMARY KEY,
    fingerprint text NOT NULL,     -- what the request asked for: a key reused for another is 422
    issue_id uuid,                 -- the stored outcome: the issue and the version its event got
    version integer,
    status_code integer,           -- or the refusal that was answered, with its body
    body jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    CHECK ((version IS NULL) <> (status_code IS NULL))
);
CREATE INDEX command_requests_expires_idx ON command_requests (expires_at);
