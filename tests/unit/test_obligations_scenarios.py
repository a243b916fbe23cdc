"""Massachusetts business, residents of many states: every decision and date against a table computed by hand.

The expected values below were computed by hand from /work/shared/design/obligations-facts.yaml and OBLIGATIONS.md
(the research), NOT from config/obligations.yaml (the code under test). Day counting as stated in the facts file:
trigger day excluded, deadline = trigger date + N calendar days (local date, America/New_York); business days skip
weekends and U.S. federal holidays (Thanksgiving 2026 = Thursday 26 November).

Clocks: discovery 2026-11-20 14:05 UTC (Fri 09:05 EST); determination 2026-11-23 15:00 UTC (Mon 10:00 EST);
consumer notices sent 2026-12-10 17:00 UTC (Thu 12:00 EST).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from agent.obligations import ChecklistItem, IncidentFacts, compute_checklist

DISCOVERED = dt.datetime(2026, 11, 20, 14, 5, tzinfo=dt.UTC)
DETERMINED = dt.datetime(2026, 11, 23, 15, 0, tzinfo=dt.UTC)
NOTICES_SENT = dt.datetime(2026, 12, 10, 17, 0, tzinfo=dt.UTC)
RESIDENTS = {"MA": 1225, "CA": 600, "TX": 250, "CO": 1001, "NH": 40, "VT": 30, "ME": 20, "NY": 300, "WA": 501,
             "FL": 500, "RI": 501, "CT": 12}
TOTAL = sum(RESIDENTS.values())  # 5 0 0 0 + ... = 4980 (> 1000 everywhere a total would be compared)

# (jurisdiction, party keyword, applies?, due local date or None for an 'as soon as practicable' standard)
# Source of each row: obligations-facts.yaml regime and notify entry named in the comment.
HAND_TABLE: list[tuple[str, str, bool, str | None]] = [
    # us-ma-93h-3: residents, AG, OCABR -- asap, no calendar date; any MA resident
    ("Massachusetts", "residents", True, None),
    ("Massachusetts", "Attorney General", True, None),
    ("Massachusetts", "Consumer Affairs", True, None),
    # us-ca-civ-1798-82: residents 30 d from discovery -> 11-20 + 30 = 12-20; AG > 500 CA (600): 15 d after notices
    ("California", "residents", True, "2026-12-20"),
    ("California", "Attorney General", True, "2026-12-25"),
    # us-tx-521-053: individuals 60 d from determination -> 11-23 + 60 = 2027-01-22; AG >= 250 TX (250): 30 d
    # -> 12-23; CRA > 10,000 persons -> 4980 not met
    ("Texas", "individuals", True, "2027-01-22"),
    ("Texas", "Attorney General", True, "2026-12-23"),
    ("Texas", "consumer reporting", False, None),
    # us-co-6-1-716: residents 30 d from determination -> 12-23; AG >= 500 CO (1001) 12-23; CRA > 1000 CO (1001)
    ("Colorado", "residents", True, "2026-12-23"),
    ("Colorado", "Attorney General", True, "2026-12-23"),
    ("Colorado", "consumer reporting", True, None),
    # us-nh-359-c-20: residents, AG asap; CRA > 1000 -- counts NH residents (40), not all states (4980)
    ("New Hampshire", "residents", True, None),
    ("New Hampshire", "Attorney General", True, None),
    ("New Hampshire", "consumer reporting", False, None),
    # us-vt-2435: consumers 45 d from discovery -> 2027-01-04; AG preliminary 14 business days from the earlier
    # of discovery / consumer notice = Fri 11-20: 23,24,25,(26 Thanksgiving),27,30, 1,2,3,4,7,8,9,10,11 -> 12-11;
    # CRA > 1000 -- VT consumers (30): not met
    ("Vermont", "consumers", True, "2027-01-04"),
    ("Vermont", "Attorney General", True, "2026-12-11"),
    ("Vermont", "consumer reporting", False, None),
    # us-me-10-1348: residents 30 d from determination -> 12-23; AG asap; CRA > 1000 -- ME residents (20): not met
    ("Maine", "residents", True, "2026-12-23"),
    ("Maine", "Attorney General", True, None),
    ("Maine", "consumer reporting", False, None),
    # us-ny-gbl-899-aa: residents 30 d from discovery -> 12-20; AG/DOS/State Police asap; CRA > 5000 NY: not met
    ("New York", "residents", True, "2026-12-20"),
    ("New York", "Attorney General", True, None),
    ("New York", "onsumer reporting", False, None),
    # us-wa-19-255-010: residents 30 d from discovery -> 12-20; AG > 500 WA (501) -> 12-20
    ("Washington", "residents", True, "2026-12-20"),
    ("Washington", "Attorney General", True, "2026-12-20"),
    # us-fl-501-171: individuals 30 d from determination -> 12-23; AG >= 500 (500) -> 12-23; CRA > 1000: not met
    ("Florida", "individuals", True, "2026-12-23"),
    ("Florida", "Legal Affairs", True, "2026-12-23"),
    ("Florida", "consumer reporting", False, None),
    # us-ri-11-49-3-4: residents 45 d from determination -> 2027-01-07; AG > 500 RI (501) asap; CRA > 500 asap
    ("Rhode Island", "residents", True, "2027-01-07"),
    ("Rhode Island", "Attorney General", True, None),
    ("Rhode Island", "credit reporting", True, None),
    # us-ct-36a-701b: residents and AG 60 d from discovery -> 2027-01-19
    ("Connecticut", "residents", True, "2027-01-19"),
    ("Connecticut", "Attorney General", True, "2027-01-19"),
]


def _facts(residents: dict[str, int], **extra: Any) -> IncidentFacts:
    base: dict[str, Any] = dict(
        discovered_at=DISCOVERED, data_categories=frozenset({"ssn", "financial_account"}),
        resident_states=frozenset(residents), residents_by_state=residents,
        total_affected=sum(residents.values()), events={"determination": DETERMINED, "consumer_notice": NOTICES_SENT},
        timezone="America/New_York")
    base.update(extra)
    return IncidentFacts(**base)


def _find(items: list[ChecklistItem], jurisdiction: str, keyword: str) -> ChecklistItem:
    found = [i for i in items if i.jurisdiction == jurisdiction and keyword.lower() in i.party.lower()]
    exact = [i for i in found if i.party == keyword]
    found = exact or found
    assert len(found) == 1, (jurisdiction, keyword, [i.party for i in items if i.jurisdiction == jurisdiction])
    return found[0]


@pytest.mark.parametrize(("jurisdiction", "keyword", "applies", "due"), HAND_TABLE,
                         ids=[f"{j}-{k}" for j, k, _, _ in HAND_TABLE])
def test_massachusetts_business_many_states(jurisdiction: str, keyword: str, applies: bool, due: str | None) -> None:
    """Each AG / resident / agency decision and date equals the hand-computed table."""
    item = _find(compute_checklist(_facts(RESIDENTS)).items, jurisdiction, keyword)
    assert (item.status == "applies") is applies, (item.status, item.conditions)
    if applies:
        got = None if item.deadline is None else item.deadline.date().isoformat()
        assert got == due, item.deadline_text


def test_massachusetts_credit_monitoring_18_months() -> None:
    """c. 93H sec. 3A: SSNs exposed -> credit monitoring for at least 18 months (facts: duration_months 18)."""
    items = compute_checklist(_facts(RESIDENTS)).items
    monitoring = [i for i in items if i.jurisdiction == "Massachusetts" and i.kind == "action"
                  and "credit monitoring" in i.standard.lower() and "offer" in i.standard.lower()]
    assert len(monitoring) == 1 and "18 months" in monitoring[0].standard and monitoring[0].status == "applies"


# Every numeric threshold in the facts file: (jurisdiction, party keyword, op, N, what is counted, flags).
# "state" = residents of that jurisdiction's state; "total" = all affected people; "state_max" = most in one state.
THRESHOLDS: list[tuple[str, str, str, int, str, frozenset[str]]] = [
    ("Colorado", "Attorney General", ">=", 500, "CO", frozenset()),
    ("Colorado", "consumer reporting", ">", 1000, "CO", frozenset()),
    ("Florida", "Legal Affairs", ">=", 500, "FL", frozenset()),
    ("Florida", "consumer reporting", ">", 1000, "FL", frozenset()),
    ("Washington", "Attorney General", ">", 500, "WA", frozenset()),
    ("Texas", "Attorney General", ">=", 250, "TX", frozenset()),
    ("Texas", "consumer reporting", ">", 10000, "total", frozenset()),
    ("Vermont", "consumer reporting", ">", 1000, "VT", frozenset()),
    ("New York", "onsumer reporting", ">", 5000, "NY", frozenset()),
    ("California", "Attorney General", ">", 500, "CA", frozenset()),
    ("Maine", "consumer reporting", ">", 1000, "ME", frozenset()),
    ("New Hampshire", "consumer reporting", ">", 1000, "NH", frozenset()),
    ("Rhode Island", "Attorney General", ">", 500, "RI", frozenset()),
    ("Rhode Island", "credit reporting", ">", 500, "RI", frozenset()),
    ("United States (HHS OCR)", "breach portal", ">=", 500, "total", frozenset({"hipaa_entity"})),
    ("United States (HHS OCR)", "annual log", "<", 500, "total", frozenset({"hipaa_entity"})),
    ("United States (HHS OCR)", "media", ">", 500, "state_max", frozenset({"hipaa_entity"})),
    ("United States (FTC)", "Federal Trade Commission (online form)", ">=", 500, "total",
     frozenset({"glba_financial"})),
    # us-fed-ftc-hbnr (vendors of personal health records): FTC >= 500, annual log < 500, media > 500 in a state
    ("United States (FTC)", "Federal Trade Commission", ">=", 500, "total", frozenset({"phr_vendor"})),
    ("United States (FTC)", "annual log", "<", 500, "total", frozenset({"phr_vendor"})),
    ("United States (FTC)", "media", ">", 500, "state_max", frozenset({"phr_vendor"})),
]


def _boundary_residents(counted: str, n: int, jurisdiction: str) -> dict[str, int]:
    if counted in ("total", "state_max"):  # all in one state (Texas' own regime needs Texans to be considered)
        return {"TX" if jurisdiction == "Texas" else "MA": n}
    # the counted state gets n; a big Massachusetts population shows other states' people are not counted
    return {"MA": 20000, counted: n}


@pytest.mark.parametrize(("jurisdiction", "keyword", "op", "n", "counted", "flags"), THRESHOLDS,
                         ids=[f"{t[0]}-{t[1]}" for t in THRESHOLDS])
@pytest.mark.parametrize("delta", [-1, 0, 1])
def test_threshold_boundaries(jurisdiction: str, keyword: str, op: str, n: int, counted: str,
                              flags: frozenset[str], delta: int) -> None:
    """N-1, N, N+1 for every threshold: applies exactly when the statute's comparison holds."""
    count = n + delta
    residents = _boundary_residents(counted, count, jurisdiction)
    cats = frozenset({"ssn", "financial_account", "health"})
    facts = _facts(residents, flags=flags, data_categories=cats,
                   total_affected=count if counted == "total" else sum(residents.values()))
    item = _find(compute_checklist(facts).items, jurisdiction, keyword)
    expected = {">=": count >= n, ">": count > n, "<": count < n}[op]
    assert (item.status == "applies") is expected, (count, item.status, item.conditions)
