"""The PowerShell the WinRM connector generates: quoting, validation and an injection corpus.

Generated text is checked with the double's tokenizer, which follows PowerShell's single-quote rules
independently of the connector's quoting code.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from connectors.errors import InvalidInput
from connectors.types import ConnectorContext, Target
from connectors.winrm_windows import WinRMWindowsConnector, fw_netsecurity
from connectors.winrm_windows.firewall import revert_script, undo_script
from connectors.winrm_windows.plan import build_plan
from connectors.winrm_windows.powershell import (
    command_line,
    encode_command,
    ps_quote,
    validate_address_token,
    validate_network,
    validate_user_name,
)
from connectors.winrm_windows.session import chunk_commands
from tests.doubles.wsman.pslang import tokenize

HOSTILE = [
    "plain",
    "it's",
    "''",
    "'; Remove-NetFirewallRule -All; '",
    "$(Stop-Computer -Force)",
    "`$env:COMPUTERNAME`",
    "a;b|c&d",
    "\u2018smart\u2019 \u201aquotes\u201b",
    "'\u2019'",
    "${function:x}",
    "@(1,2)",
    "-Name x",
    "\\\\server\\share",
    "名前 ü",
]
CONTROL = ["a\nb", "a\rb", "a\x00b", "a\tb", "a\x1bb", "a\u2028b", "a\x85b"]


class TestPsQuote:
    @pytest.mark.parametrize("value", HOSTILE)
    def test_round_trips_as_one_literal(self, value: str) -> None:
        """PowerShell's tokenizer reads the quoted value back as exactly one literal equal to the input."""
        tokens = tokenize(ps_quote(value))
        assert len(tokens) == 1 and tokens[0].kind == "str" and tokens[0].value == value

    @pytest.mark.parametrize("value", CONTROL)
    def test_control_characters_refused(self, value: str) -> None:
        """Line breaks and control characters are refused, naming the field."""
        with pytest.raises(InvalidInput, match="rule name"):
            ps_quote(value, field="rule name")

    def test_encoded_command(self) -> None:
        """-EncodedCommand is base64 of UTF-16LE, behind the fixed powershell prefix."""
        assert base64.b64decode(encode_command("Write-Output 'ü'")).decode("utf-16-le") == "Write-Output 'ü'"
        assert command_line("x").startswith("powershell -NoProfile -NonInteractive -EncodedCommand ")


class TestUserNames:
    @pytest.mark.parametrize("name", ["alice", "CORP\\alice", "j.doe-adm", "svc_backup", "John Smith", "Jörg"])
    def test_valid_names(self, name: str) -> None:
        """Ordinary Windows account names, with or without a domain, pass."""
        validate_user_name(name)

    @pytest.mark.parametrize("name", ["a'b", "a\u2019b", 'a"b', "a;b", "$(calc)", "a`b", "a\nb", "a\x00b", "a|b",
                                      "a&b", " alice", "alice ", "", "a\\b\\c", "a/b", "a*", "a%TEMP%", "a@b"])
    def test_hostile_names_refused(self, name: str) -> None:
        """Quotes, separators, subexpressions, backticks, newlines and controls are refused."""
        with pytest.raises(InvalidInput, match="user"):
            validate_user_name(name)


class TestAddresses:
    @pytest.mark.parametrize("value", ["10.0.0.1; calc", "10.0.0.1'", "$(x)", "10.0.0.1\n", "host.example", ""])
    def test_management_address_refused(self, value: str) -> None:
        """Management addresses must parse with ipaddress."""
        with pytest.raises(InvalidInput):
            validate_network(value)
        with pytest.raises(InvalidInput):
            build_plan([value], winrm_port=5986, allow_rdp=False)

    @pytest.mark.parametrize("token", ["1.2.3.4'; calc; '", "Any;x", "1.2.3.4-$(x)", "10.0.0.0/33"])
    def test_host_reported_address_refused(self, token: str) -> None:
        """Addresses read back from a host are validated before they are written back."""
        with pytest.raises(InvalidInput):
            validate_address_token(token)

    def test_no_management_address_refused(self) -> None:
        """Isolation without a management address would cut the agent off: refused."""
        with pytest.raises(InvalidInput, match="management address"):
            build_plan([], winrm_port=5986, allow_rdp=False)


def _param(line: str, name: str) -> object:
    tokens = tokenize(line)
    for i, t in enumerate(tokens):
        if t.kind == "word" and t.value == f"-{name}":
            return tokens[i + 1].value
    raise AssertionError(f"-{name} not in {line}")


class TestGeneratedScripts:
    @pytest.mark.parametrize("value", HOSTILE)
    def test_restored_rule_names_stay_literal(self, value: str) -> None:
        """A pre-existing rule with a hostile name/description is re-created with exactly that text."""
        rule = {"Name": value, "DisplayName": value, "Direction": "Inbound", "Action": "Allow", "Enabled": "True",
                "Profile": "Any", "RemoteAddress": ["10.0.0.0/255.255.255.0"], "Protocol": "TCP", "LocalPort": ["445"]}
        [line] = fw_netsecurity.create_rule_lines([rule])
        assert _param(line, "Name") == value and _param(line, "DisplayName") == value
        assert tokenize(line)[-2:][0].kind == "pipe"

    @pytest.mark.parametrize("value", CONTROL)
    def test_restored_rule_with_newline_refused(self, value: str) -> None:
        """A rule name with a line break cannot be written back (it would start a new statement)."""
        rule = {"Name": value, "Direction": "Inbound", "Action": "Allow"}
        with pytest.raises(InvalidInput):
            fw_netsecurity.create_rule_lines([rule])

    @pytest.mark.parametrize("field,value", [("Direction", "Inbound -Action Allow"), ("Action", "Allow;"),
                                             ("Enabled", "$true"), ("Protocol", "TCP'x"), ("LocalPort", "445;x"),
                                             ("Profile", "Any'; calc")])
    def test_enumerated_fields_validated(self, field: str, value: str) -> None:
        """Fields written bare (enums) or from host output are checked against their vocabulary."""
        rule = {"Name": "r", "Direction": "Inbound", "Action": "Allow", "Enabled": "True", field: value}
        with pytest.raises(InvalidInput):
            fw_netsecurity.checked_rule(rule)

    def test_every_generated_line_tokenizes(self) -> None:
        """Apply, undo and revert scripts consist of well-formed single-line statements."""
        plan = build_plan(["127.0.0.1", "2001:db8::1"], winrm_port=5986, allow_rdp=True)
        saved = {"profiles": [{"Name": n, "Enabled": "True", "DefaultInboundAction": "NotConfigured",
                               "DefaultOutboundAction": "NotConfigured", "State": "ON",
                               "FirewallPolicy": "BlockInbound,AllowOutbound"}
                              for n in ("Domain", "Private", "Public")],
                 "rules": [{"Name": HOSTILE[3], "Direction": "Inbound", "Action": "Allow", "RemoteAddress": ["Any"]}]}
        for dialect in ("netsecurity",):
            for script in (undo_script(dialect, ["IR-Containment-Block-In"], saved),
                           revert_script(dialect, plan, saved)):
                for line in script.splitlines():
                    if line.startswith(("New-NetFirewallRule", "Set-NetFirewallProfile")):
                        tokenize(line)

    def test_chunks_stay_under_limit(self) -> None:
        """Chunk writer commands stay under 8191 characters and carry only base64."""
        script = "Write-Output 'x'\n" * 3000
        cmds = chunk_commands(script, "0123456789abcdef")
        assert len(cmds) > 3 and all(len(c) <= 8191 for c in cmds)
        payload = "".join(c.split("(echo ", 1)[1].split(")", 1)[0] for c in cmds[1:-1])
        assert base64.b64decode(payload).decode() == script


class TestValidateBeforeConnect:
    def test_unknown_options_and_insecure_basic_refused(self) -> None:
        """Option typos and Basic over HTTP are refused by validate, before any connection."""
        conn = WinRMWindowsConnector()
        with pytest.raises(InvalidInput, match="unknown"):
            conn.validate(Target("w", "host", "10.0.0.1", "winrm_windows", options={"alow_insecure": True}),
                          "isolate", {})
        with pytest.raises(InvalidInput, match="basic"):
            conn.validate(Target("w", "host", "10.0.0.1", "winrm_windows",
                                 options={"allow_insecure": True, "transport": "basic"}), "isolate", {})
        with pytest.raises(InvalidInput, match="deadman"):
            conn.validate(Target("w", "host", "10.0.0.1", "winrm_windows", options={"deadman_minutes": 0}),
                          "isolate", {})

    def test_preview_does_not_connect(self) -> None:
        """preview lists the statements isolation would run (address 192.0.2.1 is never contacted)."""
        conn = WinRMWindowsConnector()
        lines = conn.preview(Target("w", "host", "192.0.2.1", "winrm_windows"), "isolate", {},
                             ConnectorContext(management_addresses=("10.0.0.5",)))
        assert any("IR-Containment-Block-In" in x for x in lines)
        assert any("IR-Containment-Revert" in x for x in lines)


class TestTransportChoice:
    """check-config and validate refuse transports that cannot work or must not be used, before any plan."""

    def _target(self, **options: object) -> Target:
        return Target("w", "host", "10.0.0.21", "winrm_windows", options=dict(options))

    def test_credssp_refused_for_containment_targets(self) -> None:
        """CredSSP delegates the operator's password to the host — the compromised one. Refused, named."""
        with pytest.raises(InvalidInput, match="credssp.*delegat") as err:
            WinRMWindowsConnector().validate(self._target(transport="credssp"), "isolate", {})
        assert err.value.detail["field"] == "transport"

    def test_kerberos_needs_a_host_name(self) -> None:
        """Kerberos asks the KDC for HTTP/<name>; by IP that is HTTP/10.0.0.21, which AD does not have."""
        conn = WinRMWindowsConnector()
        with pytest.raises(InvalidInput, match="kerberos needs server_name"):
            conn.validate(self._target(transport="kerberos", realm="LAB.TEST", kdc=["10.0.0.2"]), "isolate", {})
        with pytest.raises(InvalidInput, match="kerberos needs server_name"):
            conn.validate(self._target(transport="kerberos", server_name="10.0.0.21", realm="LAB.TEST",
                                       kdc=["10.0.0.2"]), "isolate", {})

    def test_kerberos_needs_realm_and_kdc_addresses(self) -> None:
        """No DNS lookups for the KDC: realm and KDC addresses come from the inventory."""
        with pytest.raises(InvalidInput, match="kdc"):
            WinRMWindowsConnector().validate(self._target(transport="kerberos", server_name="ws01.lab.test",
                                                          realm="LAB.TEST"), "isolate", {})

    def test_kerberos_needs_its_libraries(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without the python-gssapi binding (the 'kerberos' extra) Kerberos is refused up front, naming the fix."""
        import importlib.util

        real = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gssapi" else real(name, *a))
        with pytest.raises(InvalidInput, match="gssapi.*kerberos"):
            WinRMWindowsConnector().validate(self._target(transport="kerberos", server_name="ws01.lab.test",
                                                          realm="LAB.TEST", kdc=["10.0.0.2"]), "isolate", {})


class TestPlanSummary:
    """The plan a person approves says what stays reachable and how the agent will log on again afterwards."""

    def _summary(self, **options: object) -> str:
        target = Target("w", "host", "10.0.0.21", "winrm_windows", options=dict(options))
        ctx = ConnectorContext(management_addresses=("10.0.0.5",))
        return "\n".join(WinRMWindowsConnector().summarize(target, "isolate", {}, ctx))

    def test_ntlm_with_domain_controllers(self) -> None:
        """NTLM: the kept DCs are named as what re-authentication needs."""
        text = self._summary(domain_controllers=["10.0.0.2"])
        assert "WinRM 5986 from 10.0.0.5" in text and "DHCP and DNS" in text
        assert "NTLM" in text and "10.0.0.2" in text and "dead-man" in text

    def test_ntlm_without_domain_controllers_warns(self) -> None:
        """Without DCs the plan says a domain account will be refused."""
        assert "domain account will be refused" in self._summary()

    def test_kerberos_needs_no_dc(self) -> None:
        """Kerberos: the ticket is checked on the host."""
        import importlib.util

        if importlib.util.find_spec("krb5") is None:
            pytest.skip("kerberos extra not installed")
        text = self._summary(transport="kerberos", server_name="ws01.lab.test", realm="LAB.TEST", kdc=["10.0.0.2"])
        assert "Kerberos" in text and "no domain controller" in text


class TestRevertLength:
    def test_revert_too_long_for_a_task_is_refused(self) -> None:
        """A revert script whose -EncodedCommand exceeds CreateProcess's 32,767 characters would register and
        never run: refused before anything is sent, with the numbers."""
        from connectors.errors import Rejected
        from connectors.winrm_windows.firewall import task_arguments

        with pytest.raises(Rejected, match="over Windows' limit"):
            task_arguments("Write-Output 'x'\n" * 1200)
        assert len(task_arguments("Write-Output 'x'\n" * 100)) < 32767


class TestPrivateKrb5Config:
    def test_only_the_inventory_kdcs_no_dns(self) -> None:
        """The agent's krb5.conf names only the configured KDCs and turns every DNS lookup off, and the process
        environment is restored after use (nothing steers tickets elsewhere, nothing lingers)."""
        import os

        from connectors.winrm_windows.kerberos import krb5_environment
        from connectors.winrm_windows.options import WinRMSettings

        settings = WinRMSettings(scheme="https", port=5986, transport="kerberos", ca_file=None,
                                 server_name="ws01.lab.test", allow_insecure=False, allow_rdp=False, deadman_minutes=10,
                                 realm="LAB.TEST", kdc=("10.79.1.50", "2001:db8::50"))
        before = {k: os.environ.get(k) for k in ("KRB5_CONFIG", "KRB5CCNAME")}
        with krb5_environment(settings):
            conf = Path(os.environ["KRB5_CONFIG"]).read_text()
            assert os.environ["KRB5CCNAME"].startswith("MEMORY:")
            mode = os.stat(os.environ["KRB5_CONFIG"]).st_mode & 0o777
        assert {k: os.environ.get(k) for k in ("KRB5_CONFIG", "KRB5CCNAME")} == before
        assert mode == 0o600
        for line in ("dns_lookup_kdc = false", "dns_lookup_realm = false", "rdns = false",
                     "kdc = 10.79.1.50", "kdc = [2001:db8::50]", ".lab.test = LAB.TEST"):
            assert line in conf, line
        assert conf.count("    kdc = ") == 2
