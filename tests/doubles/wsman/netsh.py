"""``netsh advfirewall`` as the double understands it: the verbs the connector uses, real output and errors."""

from __future__ import annotations

import ipaddress

from tests.doubles.wsman.host import Rule, WindowsHost

__all__ = ["render_profiles", "render_rules", "run_netsh"]

_SEP = "-" * 70
_PROFILE_KEYS = {"domainprofile": ["Domain"], "privateprofile": ["Private"], "publicprofile": ["Public"],
                 "allprofiles": ["Domain", "Private", "Public"], "currentprofile": ["Public"]}
_IN_WORDS = {"blockinbound": "Block", "blockinboundalways": "Block", "allowinbound": "Allow",
             "notconfigured": "NotConfigured"}
_OUT_WORDS = {"allowoutbound": "Allow", "blockoutbound": "Block", "notconfigured": "NotConfigured"}


def _row(key: str, value: str) -> str:
    return f"{key:<38}{value}"


def render_profiles(host: WindowsHost) -> str:
    """``netsh advfirewall show allprofiles`` (effective values: NotConfigured prints as the default)."""
    out = [""]
    for p in host.profiles.values():
        state = "ON" if p.effective_enabled else "OFF"
        policy = f"{p.effective_inbound}Inbound,{p.effective_outbound}Outbound"
        out += [f"{p.name} Profile Settings: ", _SEP, _row("State", state), _row("Firewall Policy", policy),
                _row("LocalFirewallRules", "N/A (GPO-store only)"), _row("LocalConSecRules", "N/A (GPO-store only)"),
                _row("InboundUserNotification", "Disable"), _row("RemoteManagement", "Disable"),
                _row("UnicastResponseToMulticast", "Enable"), "", "Logging:",
                _row("LogAllowedConnections", "Disable"), _row("LogDroppedConnections", "Disable"),
                _row("FileName", "%systemroot%\\system32\\LogFiles\\Firewall\\pfirewall.log"),
                _row("MaxFileSize", "4096"), ""]
    out += ["Ok.", ""]
    return "\r\n".join(out)


def _netsh_address(token: str) -> str:
    if "-" in token or token.lower() in ("any", "localsubnet"):
        return token
    try:
        net = ipaddress.ip_network(token, strict=False)
    except ValueError:
        return token
    return f"{net.network_address}/{net.prefixlen}"


def render_rules(rules: list[Rule], verbose: bool) -> str:
    """``netsh advfirewall firewall show rule`` blocks, ending in ``Ok.``."""
    out = [""]
    for r in rules:
        out += [_row("Rule Name:", r.name), _SEP]
        if verbose:
            out.append(_row("Description:", ""))
        out += [_row("Enabled:", "Yes" if r.enabled == "True" else "No"),
                _row("Direction:", "In" if r.direction == "Inbound" else "Out"),
                _row("Profiles:", "Domain,Private,Public" if r.profile == "Any" else r.profile.replace(" ", "")),
                _row("Grouping:", r.group), _row("LocalIP:", "Any"),
                _row("RemoteIP:", ",".join(_netsh_address(t) for t in r.remote)),
                _row("Protocol:", r.protocol)]
        if r.protocol in ("TCP", "UDP"):
            out += [_row("LocalPort:", ",".join(r.local_ports)), _row("RemotePort:", "Any")]
        out += [_row("Edge traversal:", "No")]
        if verbose:
            out += [_row("InterfaceTypes:", "Any"), _row("Security:", "NotRequired"),
                    _row("Rule source:", "Local Setting")]
        out += [_row("Action:", r.action), ""]
    out += ["Ok.", ""]
    return "\r\n".join(out)


def _valid_address(token: str) -> bool:
    if token.lower() in ("any", "localsubnet", "dns", "dhcp", "wins", "defaultgateway"):
        return True
    try:
        if "-" in token:
            a, b = token.split("-", 1)
            return ipaddress.ip_address(a).version == ipaddress.ip_address(b).version
        ipaddress.ip_network(token, strict=False)
        return True
    except ValueError:
        return False


def _kv(args: list[str]) -> dict[str, str]:
    out = {}
    for a in args:
        k, sep, v = a.partition("=")
        if not sep:
            raise KeyError(a)
        out[k.lower()] = v
    return out


def _firewall(host: WindowsHost, args: list[str]) -> tuple[str, int]:
    verb, obj, rest = (args + ["", ""])[0].lower(), (args + ["", ""])[1].lower(), args[2:]
    if obj != "rule":
        return f"The following command was not found: advfirewall firewall {' '.join(args)}.\r\n", 1
    if verb == "show":
        verbose = bool(rest) and rest[-1].lower() == "verbose"
        kv = _kv(rest[:-1] if verbose else rest)
        name = kv.get("name", "")
        rules = host.rules if name.lower() == "all" else host.rule_named(name)
        if not rules:
            return "No rules match the specified criteria.\r\n", 1
        return render_rules(rules, verbose), 0
    kv = _kv(rest)
    if verb == "delete":
        matches = host.rule_named(kv.get("name", ""))
        if not matches:
            return "No rules match the specified criteria.\r\n", 1
        host.rules = [r for r in host.rules if r not in matches]
        return f"\r\nDeleted {len(matches)} rule(s).\r\nOk.\r\n\r\n", 0
    if verb == "add":
        if not kv.get("name") or kv.get("dir") not in ("in", "out") or kv.get("action") not in ("allow", "block"):
            return "A specified value is not valid.\r\n\r\nUsage: add rule name=<string> dir=in|out ...\r\n", 1
        remote = kv.get("remoteip", "any").split(",")
        if not all(_valid_address(t) for t in remote):
            return "A specified IP address or address keyword is not valid.\r\n", 1
        profile = kv.get("profile", "any")
        host.rules.append(Rule(
            name=kv["name"], display_name=kv["name"], group="",
            direction="Inbound" if kv["dir"] == "in" else "Outbound", action=kv["action"].capitalize(),
            enabled="False" if kv.get("enable", "yes") == "no" else "True",
            profile="Any" if profile == "any" else ", ".join(p.capitalize() for p in profile.split(",")),
            remote=["Any" if t.lower() == "any" else t for t in remote],
            protocol={"tcp": "TCP", "udp": "UDP", "any": "Any"}.get(kv.get("protocol", "any"), kv.get("protocol", "")),
            local_ports=kv.get("localport", "Any").split(",")))
        return "Ok.\r\n\r\n", 0
    return f"The following command was not found: advfirewall firewall {' '.join(args)}.\r\n", 1


def run_netsh(host: WindowsHost, args: list[str]) -> tuple[str, int]:
    """Output and exit code of ``netsh.exe <args>``."""
    low = [a.lower() for a in args]
    if low[:1] != ["advfirewall"]:
        return f"The following command was not found: {' '.join(args)}.\r\n", 1
    try:
        if low[1:2] == ["firewall"]:
            return _firewall(host, args[2:])
        if low[1:3] == ["show", "allprofiles"]:
            return render_profiles(host), 0
        if low[1:2] == ["set"] and len(low) == 5 and low[2] in _PROFILE_KEYS:
            names = _PROFILE_KEYS[low[2]]
            if low[3] == "state" and low[4] in ("on", "off", "notconfigured"):
                for n in names:
                    host.profiles[n].enabled = {"on": "True", "off": "False"}.get(low[4], "NotConfigured")
                return "Ok.\r\n\r\n", 0
            if low[3] == "firewallpolicy":
                pin, _, pout = low[4].partition(",")
                if pin in _IN_WORDS and pout in _OUT_WORDS:
                    for n in names:
                        host.profiles[n].inbound = _IN_WORDS[pin]
                        host.profiles[n].outbound = _OUT_WORDS[pout]
                    return "Ok.\r\n\r\n", 0
    except KeyError:
        pass
    return f"A specified value is not valid.\r\n\r\nThe following command was not found: {' '.join(args)}.\r\n", 1
