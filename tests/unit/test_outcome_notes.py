"""A note shared by several actions of one run is printed once (the demo printed the long Kerberos/Entra note of
`disable-account` twice, once under `disable` and once under `sessions`)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from agent.commands import act_view

NOTE = "Kerberos tickets already issued stay valid until they expire (10 h by default)"


def outcome(step: str, warnings: list[str]) -> SimpleNamespace:
    return SimpleNamespace(target="lab-ad", step=step, state="done", summary=f"{step} ok", items=[],
                           warnings=warnings)


def test_a_shared_note_is_printed_once(capsys: pytest.CaptureFixture[str]) -> None:
    shown: set[str] = set()
    act_view.print_outcome(outcome("disable", [NOTE]), shown)
    act_view.print_outcome(outcome("sessions", [NOTE, "logonHours set to none"]), shown)
    out = capsys.readouterr().out
    assert out.count(NOTE) == 1
    assert "the same as above" in out
    assert "logonHours set to none" in out


def test_without_a_run_every_note_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    act_view.print_outcome(outcome("disable", [NOTE]))
    act_view.print_outcome(outcome("sessions", [NOTE]))
    assert capsys.readouterr().out.count(NOTE) == 2
