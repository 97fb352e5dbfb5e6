// The API's closed values (domain/values.py; verticals and kinds: the shipped rules file), in
// the order the page lists them: tests/unit/test_page_vocabulary.py checks them against the
// domain's, so they cannot drift.

export const STATUSES = ["open", "acknowledged", "snoozed", "resolved"];
export const SEVERITIES = ["critical", "high", "medium", "low"];
export const VERTICALS = ["restaurant", "grocery", "retail", "parcel", "pharmacy", "florist"];
export const KINDS = [
  "venue_acceptance_delayed",
  "venue_rejected",
  "no_courier_assigned",
  "courier_waiting_at_venue",
  "ready_not_picked_up",
  "eta_slipped",
  "delivery_overdue",
  "courier_stationary",
  "courier_reassigned_repeatedly",
  "payment_failed",
  "order_stale",
  "prescription_check_pending",
];
export const RESOLUTIONS = ["fixed", "compensated", "no_action_needed", "false_positive", "duplicate", "other"];
export const ACTIONS = ["contact_customer", "contact_venue", "contact_courier", "compensate", "reassign_courier", "cancel_order", "other"];
