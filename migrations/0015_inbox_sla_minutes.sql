-- The SLA minutes per severity of an issue's vertical, as its Detected event recorded them
-- (the rules file's [vertical.V] sla_minutes): due_at counts from them whenever the
-- severity changes. NULL: an issue raised by hand, or detected before they were recorded
-- (the fixed table of domain/issue.py). A rebuild (`inbox rebuild inbox`) fills it for
-- the issues already stored.
ALTER TABLE inbox_issues ADD COLUMN sla_minutes jsonb;
