"""Normalisers: realistic payloads of each source become the one alert model; malformed ones are refused by field."""

from __future__ import annotations

import pytest

from agent.intake.model import MalformedAlert
from agent.intake.normalizers import normalize
from tests.unit.daemon_env import wazuh_alert

ELASTIC = {
    "rule": {"id": "9a1f7e40-0f1a-11ef-9262-0242ac120002", "name": "Impossible travel"},
    "alerts": [
        {"@timestamp": "2026-11-23T03:12:44.118Z", "kibana.alert.uuid": "f3c1...",
         "kibana.alert.rule.rule_id": "impossible-travel-login", "kibana.alert.rule.name": "Impossible travel",
         "kibana.alert.risk_score": 73, "kibana.alert.severity": "high",
         "host": {"name": "web01", "os": {"family": "debian"}}, "user": {"name": "alice"},
         "source": {"ip": "203.0.113.7", "geo": {"country_iso_code": "BR"}}},
        {"kibana": {"alert": {"rule": {"rule_id": "impossible-travel-login"}, "severity": "critical"}},
         "host": {"hostname": "web02"}, "user.name": "bob"},
    ],
}
SPLUNK = {
    "result": {"host": "web01", "user": "alice", "src_ip": "203.0.113.7", "severity": "high", "count": "31",
               "_time": "1795397564"},
    "sid": "scheduler__admin__search__RMD5b3f7e_at_1795397580_1", "results_link": "https://splunk:8000/app/...",
    "search_name": "SSH brute force then success", "owner": "admin", "app": "search",
}
ALERTMANAGER = {
    "version": "4", "groupKey": "{}:{alertname=\"CryptominerDetected\"}", "truncatedAlerts": 0, "status": "firing",
    "receiver": "containment", "groupLabels": {"alertname": "CryptominerDetected"},
    "commonLabels": {"alertname": "CryptominerDetected", "severity": "critical"},
    "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
    "alerts": [
        {"status": "firing", "labels": {"instance": "web01:9100", "job": "node"},
         "annotations": {"summary": "xmrig running on web01"}, "startsAt": "2026-11-23T03:10:00Z",
         "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prom:9090/graph", "fingerprint": "c2d14f0a"},
        {"status": "resolved", "labels": {"instance": "[2001:db8::5]:9100", "severity": "warning"},
         "annotations": {}, "startsAt": "2026-11-23T02:00:00Z", "endsAt": "2026-11-23T03:00:00Z",
         "fingerprint": "aa01"},
    ],
}


class TestWazuh:
    def test_alert_json(self):
        """A Wazuh alert yields host, user, source IP, rule id and level 10 scaled to 67."""
        [a] = normalize("wazuh", wazuh_alert("victim"), "wazuh")
        assert (a.source, a.rule_id, a.severity, a.host, a.user, a.source_ip) == (
            "wazuh", "5712", 67, "victim", "alice", "10.9.1.130")
        assert "sshd" in a.tags and a.raw["level"] == 10

    def test_wrapped_and_windows_fields(self):
        """An {"alert": ...} wrapper is unwrapped and Windows event fields are read."""
        body = wazuh_alert("pc7", level=15)
        body["data"] = {"win": {"eventdata": {"targetUserName": "bob", "ipAddress": "192.0.2.9"}}}
        [a] = normalize("wazuh", {"alert": body}, "wazuh")
        assert (a.severity, a.user, a.source_ip) == (100, "bob", "192.0.2.9")

    @pytest.mark.parametrize("mutate, field", [
        (lambda b: b.pop("rule"), "rule"),
        (lambda b: b["rule"].update(level="high"), "rule.level"),
        (lambda b: b["rule"].update(level=16), "rule.level"),
        (lambda b: (b.pop("agent"), b.pop("data")), "host"),
        (lambda b: b["agent"].update(name="victim;reboot"), "host"),
        (lambda b: b["data"].update(dstuser="a|id;x"), "user"),
        (lambda b: b["data"].update(srcip="10.0.0.1; rm -rf /"), "source_ip"),
    ])
    def test_malformed(self, mutate, field):
        """Missing or injecting fields are refused with the field's name."""
        body = wazuh_alert()
        mutate(body)
        with pytest.raises(MalformedAlert, match=field.replace(".", r"\.")):
            normalize("wazuh", body, "wazuh")


class TestElastic:
    def test_webhook_connector_batch(self):
        """Each alert document of context.alerts becomes one alert, flattened or nested fields alike."""
        a, b = normalize("elastic", ELASTIC, "elastic")
        assert (a.rule_id, a.severity, a.host, a.user, a.source_ip, a.title) == (
            "impossible-travel-login", 73, "web01", "alice", "203.0.113.7", "Impossible travel")
        assert (b.rule_id, b.severity, b.host, b.user, b.source_ip) == (
            "impossible-travel-login", 100, "web02", "bob", None)

    def test_single_document(self):
        """A detection alert document posted on its own is accepted."""
        [a] = normalize("elastic", ELASTIC["alerts"][0], "elastic")
        assert a.host == "web01"

    def test_document_without_host(self):
        """A batched document naming nothing to act on is recorded as invalid, naming its position."""
        body = {"alerts": [{"kibana.alert.rule.rule_id": "x", "kibana.alert.risk_score": 50}]}
        [a] = normalize("elastic", body, "elastic")
        assert a.invalid and a.invalid.startswith("alerts[0].host") and not a.actionable


class TestSplunk:
    def test_saved_search_webhook(self):
        """The first result row gives host, user and src_ip; search_name is the rule id."""
        [a] = normalize("splunk", SPLUNK, "splunk")
        assert (a.rule_id, a.severity, a.host, a.user, a.source_ip) == (
            "SSH brute force then success", 75, "web01", "alice", "203.0.113.7")

    def test_numeric_severity_and_dest(self):
        """A numeric severity is kept on the 0-100 scale and 'dest' names the host."""
        body = {**SPLUNK, "result": {"dest": "db01", "severity": 42}}
        [a] = normalize("splunk", body, "splunk")
        assert (a.host, a.severity) == ("db01", 42)

    def test_missing_result(self):
        """A payload without 'result' is not a Splunk webhook."""
        with pytest.raises(MalformedAlert, match="result"):
            normalize("splunk", {"search_name": "x"}, "splunk")


class TestAlertmanager:
    def test_v4_webhook(self):
        """Each alert is normalised; common labels fill in; ports are stripped; resolved is not actionable."""
        a, b = normalize("alertmanager", ALERTMANAGER, "am")
        assert (a.rule_id, a.severity, a.host, a.title, a.actionable) == (
            "CryptominerDetected", 100, "web01", "xmrig running on web01", True)
        assert (b.host, b.severity, b.actionable) == ("2001:db8::5", 50, False)

    def test_other_version_refused(self):
        """Only webhook version 4 is accepted."""
        with pytest.raises(MalformedAlert, match="version"):
            normalize("alertmanager", {**ALERTMANAGER, "version": "3"}, "am")

    def test_unknown_severity_word(self):
        """A severity word outside the table is not guessed: that alert is recorded invalid, naming the field."""
        body = {**ALERTMANAGER, "commonLabels": {"severity": "spicy"}}
        bad, ok = normalize("alertmanager", body, "am")
        assert bad.invalid and "alerts[0].labels.severity" in bad.invalid and not bad.actionable
        assert ok.invalid is None and ok.severity == 50  # its own label "warning" wins over the group's


class TestGeneric:
    def test_documented_format(self):
        """The generic format maps one to one; words are accepted for severity."""
        [a] = normalize("generic", {"rule_id": "edr-4471", "host": "10.9.0.21", "severity": "critical",
                                    "user": "CORP\\alice", "source_ip": "2001:db8::1", "title": "beacon",
                                    "tags": ["edr"]}, "gen")
        assert (a.rule_id, a.host, a.severity, a.user, a.source_ip, a.tags) == (
            "edr-4471", "10.9.0.21", 100, "CORP\\alice", "2001:db8::1", ("edr",))

    @pytest.mark.parametrize("body, field", [
        ({"rule_id": "x", "hots": "web1"}, "hots"),
        ({"rule_id": "x"}, "host"),
        ({"host": "web1"}, "rule_id"),
        ({"rule_id": "x", "host": "web1", "severity": 101}, "severity"),
        ({"rule_id": "x", "host": ["a", {"b": 1}]}, "host"),
        ({"rule_id": "x", "host": {"name": "web1"}}, "host"),
        ({"rule_id": "x", "host": "web1", "tags": "edr"}, "tags"),
    ])
    def test_invalid(self, body, field):
        """Typos, missing fields, out-of-range severity and wrong types are refused by field."""
        with pytest.raises(MalformedAlert, match=field):
            normalize("generic", body, "gen")

    def test_not_an_object(self):
        """A JSON array or scalar is not an alert."""
        with pytest.raises(MalformedAlert, match="JSON object"):
            normalize("generic", [1, 2], "gen")
