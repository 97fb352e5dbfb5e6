-- One-time login tickets (POST /api/session {"ticket"}): the id (jti) of each ticket used,
-- so a second use is refused. A ticket lives at most 15 minutes; each insert deletes the
-- rows older than a day (adapters/login_tickets.py), so the table stays small.
CREATE TABLE login_tickets (
    jti text PRIMARY KEY,
    used_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX login_tickets_used_at ON login_tickets (used_at);
