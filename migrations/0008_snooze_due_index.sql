-- app/workers/waker.py: the snoozed issues whose time has come, earliest first. Only the
-- snoozed few are in it, so it stays small however many issues the inbox holds.
CREATE INDEX inbox_issues_snoozed_until_idx ON inbox_issues (snoozed_until, issue_id)
    WHERE status = 'snoozed';
