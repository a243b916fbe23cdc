"""Notification checklist: applicability and deadline arithmetic from a fixed discovery time."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from agent.obligations import (
    IncidentFacts,
    add_business_days,
    compute_checklist,
    load_rules,
    us_federal_holidays,
)

# Friday 2026-11-20, 21:00 in Boston (02:00 UTC on the 21st): the local date is what the day count uses.
DISCOVERED = dt.datetime(2026, 11, 21, 2, 0, tzinfo=dt.UTC)
TZ = "America/New_York"


def _facts(**overrides: object) -> IncidentFacts:
    base: dict[str, object] = {
        "discovered_at": DISCOVERED, "data_categories": frozenset({"ssn", "financial_account"}),
        "resident_states": frozenset({"MA", "WA"}), "residents_by_state": {"MA": 40, "WA": 700},
        "total_affected": 740, "timezone": TZ,
    }
    base.update(overrides)
    return IncidentFacts(**base)  # type: ignore[arg-type]


def _item(checklist, regime_id: str, party_start: str):  # type: ignore[no-untyped-def]
    matches = [i for i in checklist.items if i.regime_id == regime_id and i.party.startswith(party_start)]
    assert len(matches) == 1, [i.party for i in checklist.items if i.regime_id == regime_id]
    return matches[0]


class TestMassachusetts:
    def test_asap_has_no_date(self) -> None:
        """Massachusetts residents/AG/OCABR show the statutory standard and never a calendar date."""
        checklist = compute_checklist(_facts())
        for party in ("Affected Massachusetts", "Massachusetts Attorney General", "Director, Office"):
            item = _item(checklist, "ma-93h-3", party)
            assert item.deadline is None and item.status == "applies"
            assert "as soon as practicable and without unreasonable delay" in item.deadline_text
            assert not re.search(r"\d{4}-\d{2}-\d{2}|20\d\d", item.deadline_text)

    def test_credit_monitoring_when_ssn_exposed(self) -> None:
        """SSNs of MA residents bring the 18-month credit-monitoring duty; without SSNs it is not listed."""
        item = next(i for i in compute_checklist(_facts()).items if i.regime_id == "ma-93h-3a")
        assert "18 months" in item.standard
        without = compute_checklist(_facts(data_categories=frozenset({"financial_account"})))
        assert not [i for i in without.items if i.regime_id == "ma-93h-3a"]

    def test_no_ma_residents_not_considered(self) -> None:
        """Without MA residents the MA regimes are listed as not considered, with the reason."""
        checklist = compute_checklist(_facts(resident_states=frozenset({"WA"})))
        assert not [i for i in checklist.items if i.regime_id.startswith("ma-")]
        assert any("MA residents" in reason for _, reason in checklist.not_considered)


class TestThirtyDayState:
    def test_washington_thirty_days_from_local_discovery_date(self) -> None:
        """WA: discovered Fri 20 Nov (local) → due end of Sun 20 Dec 2026 local time; trigger day excluded."""
        item = _item(compute_checklist(_facts()), "wa-19-255-010", "Affected Washington")
        assert item.deadline == dt.datetime(2026, 12, 20, 23, 59, 59, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
        assert "Sunday 20 December 2026" in item.deadline_text

    def test_threshold_boundaries(self) -> None:
        """WA AG needs more than 500 residents: 500 is not enough, 501 is, unknown stays conditional."""
        at = _item(compute_checklist(_facts(residents_by_state={"WA": 500})), "wa-19-255-010", "Washington Attorney")
        above = _item(compute_checklist(_facts(residents_by_state={"WA": 501})), "wa-19-255-010", "Washington Att")
        unknown = _item(compute_checklist(_facts(residents_by_state={})), "wa-19-255-010", "Washington Attorney")
        assert (at.status, above.status, unknown.status) == ("threshold not met", "applies", "conditional")

    def test_determination_clock_needs_its_date(self) -> None:
        """Colorado's clock starts at determination: no date until that event is given, then +30 days."""
        facts = _facts(resident_states=frozenset({"CO"}))
        item = _item(compute_checklist(facts), "co-6-1-716", "Affected Colorado")
        assert item.deadline is None and "after the determination that a breach occurred" in item.deadline_text
        determined = dt.datetime(2026, 11, 25, 15, 0, tzinfo=dt.UTC)
        dated = _item(compute_checklist(_facts(resident_states=frozenset({"CO"}),
                                               events={"determination": determined})),
                      "co-6-1-716", "Affected Colorado")
        assert dated.deadline is not None and dated.deadline.date() == dt.date(2026, 12, 25)

    def test_california_ag_runs_from_consumer_notice(self) -> None:
        """California's AG copy is due 15 days after residents are notified, shown as such until that date exists."""
        facts = _facts(resident_states=frozenset({"CA"}), residents_by_state={"CA": 900})
        item = _item(compute_checklist(facts), "ca-civ-1798-82", "California Attorney")
        assert item.deadline is None and "15 calendar days after the date notices are sent" in item.deadline_text
        residents = _item(compute_checklist(facts), "ca-civ-1798-82", "Affected California")
        assert residents.deadline is not None and residents.deadline.date() == dt.date(2026, 12, 20)


class TestFederalAndEu:
    def test_sec_business_days_over_weekend(self) -> None:
        """SEC 8-K: materiality determined Thu 19 Nov 2026 → due Wed 25 Nov (Sat/Sun skipped)."""
        facts = _facts(flags=frozenset({"public_company"}),
                       events={"materiality_determination": dt.datetime(2026, 11, 19, 17, 0, tzinfo=dt.UTC)})
        item = _item(compute_checklist(facts), "us-sec-8k-105", "SEC")
        assert item.deadline is not None and item.deadline.date() == dt.date(2026, 11, 25)

    def test_sec_business_days_over_thanksgiving(self) -> None:
        """Determined Tue 24 Nov 2026 → Wed, (Thanksgiving skipped), Fri, Mon, Tue 1 Dec."""
        assert add_business_days(dt.date(2026, 11, 24), 4) == dt.date(2026, 12, 1)

    def test_sec_not_listed_for_private_company(self) -> None:
        """Without the public_company flag the SEC rule is not considered, and the reason says so."""
        checklist = compute_checklist(_facts())
        assert not [i for i in checklist.items if i.regime_id == "us-sec-8k-105"]
        assert any("public_company" in reason for _, reason in checklist.not_considered)

    def test_gdpr_72_hours_exact(self) -> None:
        """GDPR: 72 hours from the exact discovery time, printed in UTC and local time."""
        item = _item(compute_checklist(_facts(resident_states=frozenset({"EU"}))), "eu-gdpr-33-34", "Competent")
        assert item.deadline == DISCOVERED + dt.timedelta(hours=72)
        assert "2026-11-24 02:00 UTC" in item.deadline_text and "2026-11-23 21:00 EST" in item.deadline_text

    def test_hipaa_small_breach_log_after_year_end(self) -> None:
        """HIPAA breaches under 500 go in the annual log due 60 days after year end (2027-03-01)."""
        facts = _facts(flags=frozenset({"hipaa_entity"}), data_categories=frozenset({"health"}), total_affected=20)
        log = _item(compute_checklist(facts), "us-hipaa-breach", "HHS Secretary (annual")
        portal = _item(compute_checklist(facts), "us-hipaa-breach", "HHS Secretary (breach")
        assert log.deadline is not None and log.deadline.date() == dt.date(2027, 3, 1) and log.status == "applies"
        assert portal.status == "threshold not met"

    def test_vermont_preliminary_notice_earliest_of(self) -> None:
        """Vermont AG: 14 business days from discovery, earlier if consumers are notified first."""
        item = _item(compute_checklist(_facts(resident_states=frozenset({"VT"}))), "vt-9-2435", "Vermont Attorney")
        assert item.deadline is not None and item.deadline.date() == dt.date(2026, 12, 11)
        assert "earlier if the date notices are sent to residents comes first" in item.deadline_text

    def test_unknown_data_categories_make_items_conditional(self) -> None:
        """With no data categories recorded, state notices are listed but conditional on the data exposed."""
        item = _item(compute_checklist(_facts(data_categories=frozenset())), "ma-93h-3", "Affected Massachusetts")
        assert item.status == "conditional" and "data categories unknown" in item.conditions[0]

    def test_naive_discovery_time_rejected(self) -> None:
        """A discovery time without a zone is ambiguous for a legal clock and is refused."""
        with pytest.raises(ValueError, match="timezone-aware"):
            compute_checklist(_facts(discovered_at=dt.datetime(2026, 11, 20, 12, 0)))


class TestHolidaysAndTable:
    def test_federal_holidays_2026_and_observed_rules(self) -> None:
        """2026 holidays: Thanksgiving 26 Nov, Independence Day observed Fri 3 Jul; 2027: Christmas on Fri 24 Dec."""
        holidays = us_federal_holidays(2026)
        assert {dt.date(2026, 11, 26), dt.date(2026, 7, 3), dt.date(2026, 1, 19)} <= holidays
        assert dt.date(2027, 12, 24) in us_federal_holidays(2027)
        assert dt.date(2027, 12, 31) in us_federal_holidays(2027)  # New Year's Day 2028 is a Saturday

    def test_rules_table_is_complete(self) -> None:
        """Every regime carries a citation, sources, confidence and valid clock/start values; the table has as_of."""
        rules = load_rules()
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", rules.as_of)
        assert "not legal advice" in rules.disclaimer
        assert len(rules.regimes) >= 21
        for regime in rules.regimes:
            assert regime["citation"] and regime["confidence"] in {"high", "medium-high", "medium"}, regime["id"]
            assert regime["sources"] and all(s.startswith("http") for s in regime["sources"]), regime["id"]
            for notice in regime.get("notices") or ():
                assert notice["clock"] in {"asap", "days", "business_days", "hours", "none"}, regime["id"]
                if notice["clock"] in {"days", "business_days", "hours"}:
                    assert isinstance(notice["value"], int)
                assert notice["starts"].split(":")[0] in {
                    "discovery", "determination", "materiality_determination", "consumer_notice",
                    "calendar_year_end", "regulator_identification", "earliest_of"}, regime["id"]
