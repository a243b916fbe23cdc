"""Configuration, inventory and runbook errors name the file, the line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import load_settings
from agent.errors import ConfigError, InputError
from agent.inventory import load_inventory
from agent.runbook import load_runbook
from agent.validate import duration, ip_or_cidr, username

REPO = Path(__file__).resolve().parents[2]


def write(tmp: Path, name: str, text: str) -> Path:
    p = tmp / name
    p.write_text(text)
    return p


class TestInventoryErrors:
    def test_shipped_examples_are_valid(self):
        """The annotated example configuration loads."""
        settings = load_settings(REPO / "agent" / "data" / "config" / "agent.yaml")
        inv = load_inventory(settings.inventory)
        assert "web01" in inv.hosts and inv.devices["fw-edge"].options["device_type"] == "cisco_asa"

    @pytest.mark.parametrize("body,line,field,message", [
        ("hosts:\n  web:\n    address: 10.0.0.300\n    os: linux\n", 3, "hosts.web.address", "not"),
        ("hosts:\n  web:\n    address: 10.0.0.3\n    os: solaris\n", 4, "hosts.web.os", "unknown os"),
        ("hosts:\n  web:\n    os: linux\n", 2, "hosts.web", "missing required field 'address'"),
        ("hosts:\n  web:\n    address: 10.0.0.3\n    os: linux\n    colour: red\n", 5, "hosts.web.colour",
         "unknown field"),
        (("hosts:\n  web:\n    address: 10.0.0.3\n    os: linux\n    credentials:\n      username: root\n"
         "      password: hunter2\n"), 7, "hosts.web.credentials.password", "inline secrets are not allowed"),
        ("protected:\n  cidrs: [10.0.0.0/33]\n", 2, "protected.cidrs[0]", "not a valid"),
        ("management:\n  addresses: [mgmt.example]\n", 2, "management.addresses[0]", "not a valid IP"),
        ("hosts:\n  web:\n    address: 10.0.0.3\n  web:\n    address: 10.0.0.4\n", 4, "hosts.web", "duplicate"),
        ("hosts: [\n", 2, None, "YAML syntax error"),
        ("hosts:\n  'bad name!':\n    address: 10.0.0.3\n    os: linux\n", 2, "hosts.bad name!", "not a valid name"),
    ])
    def test_error_names_file_line_field(self, tmp_path, body, line, field, message):
        """Each mistake is reported as file:line: field: message."""
        path = write(tmp_path, "inventory.yaml", body)
        with pytest.raises(ConfigError) as info:
            load_inventory(path)
        err = info.value
        assert err.file == str(path) and err.line == line and message in err.reason
        if field:
            assert err.field == field
        assert str(err).startswith(f"{path}:{line}: ")

    def test_secret_value_never_in_error(self, tmp_path):
        """An inline password is refused without echoing it."""
        path = write(tmp_path, "inventory.yaml", "hosts:\n  web:\n    address: 10.0.0.3\n    os: linux\n"
                     "    credentials: {username: root, password: S3cretValue!}\n")
        with pytest.raises(ConfigError) as info:
            load_inventory(path)
        assert "S3cretValue" not in str(info.value)


class TestRunbookErrors:
    @pytest.mark.parametrize("body,line,message", [
        ("name: x\ntarget: host\nsteps:\n  - id: a\n", 4, "exactly one of 'action'"),
        ("name: x\ntarget: vm\nsteps:\n  - {id: a, action: isolate}\n", 2, "unknown target kind"),
        ("name: x\ntarget: host\nsteps:\n  - id: a\n    action: isolate\n    args: {n: '${missing}'}\n", 6,
         "undefined parameter"),
        ("name: x\ntarget: host\nsteps:\n  - {id: a, action: isolate}\n  - {id: a, action: isolate}\n", 5,
         "duplicate step id"),
        ("name: x\ntarget: host\nsteps:\n  - {id: a, action: 'isolate; rm'}\n", 4, "not a valid action"),
        ("name: x\ntarget: host\nsteps: []\n", 3, "at least one step"),
        ("name: X Y\ntarget: host\nsteps:\n  - {id: a, action: isolate}\n", 1, "not a valid runbook name"),
        ("name: x\ntarget: host\nparameters:\n  n: {type: int, default: five}\nsteps:\n  - {id: a, action: b}\n",
         4, "not of type int"),
    ])
    def test_runbook_error_names_file_and_line(self, tmp_path, body, line, message):
        """Runbook schema errors carry the file and line."""
        path = write(tmp_path, "rb.yaml", body)
        with pytest.raises(ConfigError) as info:
            load_runbook(path)
        assert info.value.line == line and message in info.value.reason and info.value.file == str(path)

    def test_shipped_runbooks_load(self):
        """Every shipped runbook is valid."""
        for path in (REPO / "agent" / "data" / "runbooks").glob("*.yaml"):
            assert load_runbook(path).name == path.stem

    def test_parameter_type_checked(self):
        """A wrong parameter type is an input error naming the parameter."""
        book = load_runbook(REPO / "agent" / "data" / "runbooks" / "isolate-host.yaml")
        with pytest.raises(InputError, match="confirm_seconds must be int"):
            book.bind({"confirm_seconds": "soon"})
        with pytest.raises(InputError, match="unknown parameter"):
            book.bind({"nope": 1})


class TestValues:
    @pytest.mark.parametrize("text,seconds", [("30m", 1800), ("4h", 14400), ("1h30m", 5400), ("2d", 172800)])
    def test_durations(self, text, seconds):
        """Durations parse into seconds."""
        assert duration(text).total_seconds() == seconds

    @pytest.mark.parametrize("text", ["", "0s", "4 hours", "-1h", "400d", "1h;rm"])
    def test_bad_durations(self, text):
        """Bad durations name the field."""
        with pytest.raises(InputError, match="ttl"):
            duration(text)

    @pytest.mark.parametrize("text", ["1.2.3.4\n", "1.2.3.4;reboot", "1.2.3.4 ", "١.٢.٣.٤", "a" * 100, "1.2.3.4/40"])
    def test_bad_addresses(self, text):
        """Addresses with injection characters or unicode digits are refused."""
        with pytest.raises(InputError, match="address"):
            ip_or_cidr(text)

    @pytest.mark.parametrize("text", ["jdoe", "LAB\\jdoe", "j.doe@lab.test"])
    def test_good_usernames(self, text):
        """Usual account name forms are accepted."""
        assert username(text) == text

    @pytest.mark.parametrize("text", ["a)(b", "$(id)", "Jöhn", "o'brien"])
    def test_odd_but_legal_usernames(self, text):
        """Names AD accepts are accepted (escaped where they are used, never refused): issue 17."""
        assert username(text) == text

    @pytest.mark.parametrize("text", ["*", "a[b]", 'a"b', "j\x00", "jdoe\n", "a" * 300])
    def test_bad_usernames(self, text):
        """Filter or shell metacharacters in account names are refused."""
        with pytest.raises(InputError, match="user"):
            username(text)
