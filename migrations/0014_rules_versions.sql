-- The rules versions (issue 15): every rules file that was activated, by its version (the
-- content hash of app/rules_config.version_of), with its text, so that every process can
-- parse the very file another one activated; and the active one.
CREATE TABLE rules_versions (
    version text PRIMARY KEY,
    text text NOT NULL,
    source text NOT NULL,  -- the file it was read from, as its activator named it
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The active version, one row per ORDERS stream: the detectors that share a stream's
-- consumer (and the APIs that feed it) judge with one version. Deployments that share a
-- database but consume streams of their own (a staging beside production, test runs) keep
-- theirs apart. `generation` counts activations, so that a process acts on a newer one
-- only (a read that raced an activation never takes a process back). Activating is one
-- transaction that updates this row and sends NOTIFY rules_activated (app/rules_source.py).
CREATE TABLE rules_active (
    orders_stream text PRIMARY KEY,
    version text NOT NULL REFERENCES rules_versions (version),
    generation bigint NOT NULL,
    activated_at timestamptz NOT NULL DEFAULT now(),
    activated_by text NOT NULL
);
