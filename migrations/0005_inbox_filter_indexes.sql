-- The inbox's typical filters over unresolved issues, each in the default sort order, so
-- that one index scan answers a page (measured at 1,000,000 issues: an assignee page took
-- ~9 ms as a bitmap AND plus sort, a country page walked ~800 rows it then discarded).
CREATE INDEX inbox_issues_open_assignee_idx ON inbox_issues
    (assignee, priority DESC, detected_at, issue_id)
    WHERE status <> 'resolved' AND assignee IS NOT NULL;
CREATE INDEX inbox_issues_open_country_idx ON inbox_issues
    (country, priority DESC, detected_at, issue_id) WHERE status <> 'resolved';
CREATE INDEX inbox_issues_open_vertical_country_updated_idx ON inbox_issues
    (vertical, country, updated_at DESC, issue_id DESC) WHERE status <> 'resolved';
