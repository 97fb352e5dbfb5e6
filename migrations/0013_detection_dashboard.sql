-- The detection dashboard's reads (app/detection_queries.py: GET /api/detection/rules,
-- /timeline, /overdue).

-- Issues raised in a window, whatever their status now (the open-only index of the inbox's
-- detected_at sort leaves the resolved ones out, and they are most of a window's issues).
CREATE INDEX inbox_issues_detected_at_idx ON inbox_issues (detected_at);
-- Open issues past their SLA: the unresolved ones by due time.
CREATE INDEX inbox_issues_open_due_idx ON inbox_issues (due_at) WHERE status <> 'resolved';
-- An issue's first customer contact after it was raised (the lead time per rule).
CREATE INDEX support_contacts_order_at_idx ON support_contacts (order_id, contacted_at);
