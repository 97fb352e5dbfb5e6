// The API's closed values (domain/values.py), in the order the page lists them:
// tests/unit/test_page_vocabulary.py checks them against the domain's, so they cannot drift.
// The verticals and the kinds of issue are not closed: the rules file declares them, and
// the page reads them from GET /api/rules (rules.js).

export const STATUSES = ["open", "acknowledged", "snoozed", "resolved"];
export const SEVERITIES = ["critical", "high", "medium", "low"];
export const RESOLUTIONS = ["fixed", "compensated", "no_action_needed", "false_positive", "duplicate", "other"];
export const ACTIONS = ["contact_customer", "contact_venue", "contact_courier", "compensate", "reassign_courier", "cancel_order", "other"];
