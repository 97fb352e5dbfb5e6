"""What the simulator's verticals look like (``app/simulator.py`` tells their stories):
the mixes of verticals it draws from, each vertical's preparation, faults and norms (the
ground truth of what is a problem), and ``--verticals`` parsed and checked against the
rules file.

The norms are the simulator's own, not read from the rules file: they are the ground
truth a candidate rules file is measured against (``./dev bench precision --rules``).
``tests/unit/test_simulator.py`` holds the pharmacy's and the florist's to the shipped
file's first tiers.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from pathlib import Path

from app import rules_config

COUNTRIES = {
    "FI": (["Helsinki", "Espoo", "Tampere"], "EUR"),
    "SE": (["Stockholm", "Gothenburg"], "SEK"),
    "DE": (["Berlin", "Munich", "Hamburg"], "EUR"),
    "PL": (["Warsaw", "Krakow"], "PLN"),
    "GR": (["Athens"], "EUR"),
}
# A mix of verticals: (name, relative weight) pairs, drawn from in this order.
Mix = tuple[tuple[str, float], ...]
# The benchmarks' mix (bench precision, bench detect): the same draws as before the two
# new verticals came, so their stories, and figures, stay comparable.
CLASSIC_VERTICALS: Mix = (("restaurant", 0.6), ("grocery", 0.2), ("retail", 0.1), ("parcel", 0.1))
# The demo's (`inbox simulate`, `inbox up`): the classic mix at 90 %, and the pharmacy and
# the florist at 5 % each.
DEMO_VERTICALS: Mix = (
    ("restaurant", 0.54),
    ("grocery", 0.18),
    ("retail", 0.09),
    ("parcel", 0.09),
    ("pharmacy", 0.05),
    ("florist", 0.05),
)
# Minutes from acceptance to ready as the venue plans it (a pharmacy's includes the
# pharmacist's check; a florist's is arranging a bouquet).
PREPARATION = {
    "restaurant": (10, 20),
    "grocery": (15, 25),
    "retail": (10, 30),
    "parcel": (0, 5),
    "pharmacy": (8, 15),
    "florist": (15, 30),
}
# Verticals whose merchant delivers with its own staff: no courier event ever comes.
OWN_STAFF = frozenset({"florist"})
FAULTS = {  # probability per order
    "slow_venue": 0.06,
    "venue_rejects": 0.02,
    "no_courier": 0.05,
    "courier_stuck": 0.05,
    "courier_stationary": 0.03,
    "courier_reassigned": 0.03,
    "eta_slip": 0.08,
    "cancelled": 0.03,
    "payment_failed": 0.02,
}
COURIER_FAULTS = frozenset(
    {"no_courier", "courier_stuck", "courier_stationary", "courier_reassigned"}
)
# Each vertical's faults, drawn in this order (the classic verticals': FAULTS, as always).
VERTICAL_FAULTS: dict[str, dict[str, float]] = {
    **{vertical: FAULTS for vertical, _ in CLASSIC_VERTICALS},
    # A pharmacist busy at the counter; a prescription expired or not the patient's.
    "pharmacy": {**FAULTS, "slow_pharmacist": 0.1, "prescription_rejected": 0.03},
    # No courier of the marketplace to go wrong: the florist's own van delivers.
    "florist": {name: p for name, p in FAULTS.items() if name not in COURIER_FAULTS},
}
# Faults that hold the order up before it leaves: its delivery follows the ride, not the
# promise.
DELAYING = frozenset({"no_courier", "courier_stuck", "courier_stationary", "slow_pharmacist"})
CONTACT_AFTER_PROBLEM = 0.6
CONTACT_WITHOUT_PROBLEM = 0.06  # a question on a healthy order ("can I add a drink?")
QUICK_REASSIGNMENT = 0.15  # healthy orders whose first courier is swapped within minutes
NO_READY_ESTIMATE = 0.1  # venues that send no estimated_ready_at
ETA_NEAR_PROMISE = 0.3  # healthy orders delivered right at the promise, the ETA wobbling on it
PRESCRIPTION_CHECK = (2, 6)  # minutes a pharmacist takes, from the submission
FLORIST_HANDOVER = 0.7  # florists whose staff send order_ready and order_picked_up

# What the marketplace calls a problem (the simulator's ground truth; the shipped rules
# file encodes the same norms, with their sources, and its florist's own tiers; a unit
# test holds the pharmacy's and the florist's to the file): minutes before a venue that
# has not accepted is slow, before ready food waiting for pick-up is a problem, past the
# promise before an order or its ETA is late (customers are shown a window around the
# promise), of silence before an order is stale, and before a prescription's check is
# (waiting.prescription_check_pending's first tier).
ACCEPT_WITHIN = {
    "restaurant": 3,
    "grocery": 5,
    "retail": 10,
    "parcel": 30,
    "pharmacy": 3,
    "florist": 10,
}
PICK_UP_WITHIN = {
    "restaurant": 10,
    "grocery": 15,
    "retail": 10,
    "parcel": 30,
    "pharmacy": 10,
    "florist": 20,
}
COURIER_WAITS_AT_MOST = 10
COURIER_STILL_AT_MOST = 8  # courier_stationary's first tier
LATE_AFTER = {
    "restaurant": 5,
    "grocery": 5,
    "retail": 5,
    "parcel": 15,
    "pharmacy": 5,
    "florist": 10,
}
STALE_AFTER = {
    "restaurant": 45,
    "grocery": 45,
    "retail": 90,
    "parcel": 120,
    "pharmacy": 45,
    "florist": 60,
}
CHECK_WITHIN = 10
# The verticals the simulator can tell stories of.
MODELLED = frozenset(PREPARATION)
MAX_VERTICALS_TEXT = 1000


class VerticalsError(ValueError):
    """A mix of verticals refused: malformed, a weight not > 0, or a vertical the rules
    file does not declare or the simulator has no model of."""


def parse_verticals(text: str) -> Mix:
    """``restaurant=0.6,grocery=0.2,pharmacy=0.05`` → a mix (relative weights, each > 0;
    each name once), or VerticalsError saying what is wrong."""
    if len(text) > MAX_VERTICALS_TEXT:
        raise VerticalsError(f"at most {MAX_VERTICALS_TEXT} characters")
    mix: list[tuple[str, float]] = []
    for item in text.split(","):
        name, equals, weight_text = item.strip().partition("=")
        name = name.strip()
        if not name or not equals:
            raise VerticalsError(f"{item.strip()!r}: expected name=weight, e.g. restaurant=0.6")
        try:
            weight = float(weight_text)
        except ValueError:
            raise VerticalsError(
                f"{name}: weight {weight_text.strip()!r} is not a number"
            ) from None
        if not math.isfinite(weight) or weight <= 0:
            raise VerticalsError(f"{name}: weight must be > 0 (got {weight_text.strip()})")
        if any(name == seen for seen, _ in mix):
            raise VerticalsError(f"{name}: named twice")
        mix.append((name, weight))
    return tuple(mix)


def check_verticals(mix: Mix, declared: Collection[str]) -> Mix:
    """The mix, if every vertical in it is one the rules file declares (``declared``) and
    the simulator can tell stories of; else VerticalsError naming it."""
    if not mix:
        raise VerticalsError("name at least one vertical")
    for name, weight in mix:
        if name not in declared:
            known = ", ".join(sorted(declared))
            raise VerticalsError(f"{name!r} is not declared in the rules file (declared: {known})")
        if name not in MODELLED:
            raise VerticalsError(
                f"{name!r} is declared, but the simulator has no model of it"
                f" (it makes: {', '.join(sorted(MODELLED))})"
            )
        if not math.isfinite(weight) or weight <= 0:
            raise VerticalsError(f"{name}: weight must be > 0 (got {weight:g})")
    return mix


def simulated_verticals(mix: Mix | None, rules_file: Path | None) -> Mix:
    """What ``--verticals`` asks for (None: the demo's mix, less any vertical the rules
    file does not declare), checked against the verticals ``rules_file`` declares (None:
    the shipped file); RulesError if that file is bad."""
    declared = rules_config.load(rules_file).verticals
    if mix is not None:
        return check_verticals(mix, declared)
    demo = tuple((name, weight) for name, weight in DEMO_VERTICALS if name in declared)
    if not demo:
        raise VerticalsError(
            "the rules file declares none of the simulator's verticals"
            f" ({', '.join(sorted(MODELLED))}); name them with --verticals"
        )
    return demo
