-- Read models (projections/), each kept by a follower of the event store that applies a
-- batch of events and moves its position in one transaction. `inbox rebuild NAME` builds
-- a copy of a model's tables (CREATE TABLE ... LIKE ... INCLUDING ALL) and swaps it in.

CREATE TABLE projection_positions (
    name text PRIMARY KEY,
    position bigint NOT NULL DEFAULT 0 CHECK (position >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- projections/inbox.py: one row per issue, every field the API shows.
CREATE TABLE inbox_issues (
    issue_id uuid PRIMARY KEY,
    order_id text NOT NULL,
    kind text NOT NULL,
    status text NOT NULL,
    status_before_snooze text,
    severity text NOT NULL,
    priority integer NOT NULL,
    vertical text NOT NULL,
    country text NOT NULL,
    city text NOT NULL,
    assignee text,
    detected_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    due_at timestamptz NOT NULL,
    resolved_at timestamptz,
    resolved_by text,
    resolution text,
    snoozed_until timestamptz,
    evidence jsonb NOT NULL,
    note_count integer NOT NULL DEFAULT 0,
    action_count integer NOT NULL DEFAULT 0,
    reopen_count integer NOT NULL DEFAULT 0,
    version integer NOT NULL,
    position bigint NOT NULL
);
-- The three sorts of GET /api/issues over what is not resolved (the default view) ...
CREATE INDEX inbox_issues_open_priority_idx ON inbox_issues
    (priority DESC, detected_at, issue_id) WHERE status <> 'resolved';
CREATE INDEX inbox_issues_open_detected_idx ON inbox_issues
    (detected_at DESC, issue_id DESC) WHERE status <> 'resolved';
CREATE INDEX inbox_issues_open_updated_idx ON inbox_issues
    (updated_at DESC, issue_id DESC) WHERE status <> 'resolved';
-- ... and over everything, for views that include resolved issues.
CREATE INDEX inbox_issues_priority_idx ON inbox_issues (priority DESC, detected_at, issue_id);
CREATE INDEX inbox_issues_country_idx ON inbox_issues (country, status);
CREATE INDEX inbox_issues_order_idx ON inbox_issues (order_id);
CREATE INDEX inbox_issues_assignee_idx ON inbox_issues (assignee) WHERE assignee IS NOT NULL;
-- GET /api/stream: rows changed after a position.
CREATE INDEX inbox_issues_position_idx ON inbox_issues (position);

-- projections/stats.py: issue counts by every dimension /api/stats filters on ...
CREATE TABLE stats_counts (
    status text NOT NULL,
    severity text NOT NULL,
    kind text NOT NULL,
    vertical text NOT NULL,
    country text NOT NULL,
    city text NOT NULL,
    -- Never negative once a batch is applied; no CHECK, because INSERT ... ON CONFLICT
    -- checks the candidate row (a -1 delta) before it finds the row to add it to.
    n bigint NOT NULL,
    PRIMARY KEY (status, severity, kind, vertical, country, city)
);
-- ... and where each issue is counted, to move it when its status or severity changes.
CREATE TABLE stats_issues (
    issue_id uuid PRIMARY KEY,
    status text NOT NULL,
    status_before_snooze text,
    severity text NOT NULL,
    kind text NOT NULL,
    vertical text NOT NULL,
    country text NOT NULL,
    city text NOT NULL
);

-- projections/orders.py: each order's issues, for GET /api/orders/{order_id}.
CREATE TABLE order_issues (
    issue_id uuid PRIMARY KEY,
    order_id text NOT NULL,
    kind text NOT NULL,
    status text NOT NULL,
    status_before_snooze text,
    severity text NOT NULL,
    vertical text NOT NULL,
    country text NOT NULL,
    city text NOT NULL,
    detected_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    version integer NOT NULL
);
CREATE INDEX order_issues_order_idx ON order_issues (order_id);
