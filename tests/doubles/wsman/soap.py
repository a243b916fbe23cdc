"""WS-Management SOAP envelopes for the shell resource: parse requests, build responses and faults.

Responses carry ``a:RelatesTo`` = the request's ``a:MessageID`` (pywinrm asserts it for Signal and Delete).
Fault codes are the ones Windows sends, e.g. ``w:TimedOut`` with WSManFault code 2150858793 for a Receive
that had nothing to return within the OperationTimeout.
"""

from __future__ import annotations

import base64
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from xml.sax.saxutils import escape

__all__ = ["ACTIONS", "NS", "SHELL_URI", "Request", "envelope", "fault", "parse_request"]

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "x": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "p": "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
}
SHELL_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"
_T = "http://schemas.xmlsoap.org/ws/2004/09/transfer/"
_S = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/"
ACTIONS = {_T + "Create": "Create", _T + "Delete": "Delete", _S + "Command": "Command", _S + "Send": "Send",
           _S + "Receive": "Receive", _S + "Signal": "Signal"}
_RESPONSE_ACTION = {"Create": _T + "CreateResponse", "Delete": _T + "DeleteResponse",
                    "Command": _S + "CommandResponse", "Send": _S + "SendResponse",
                    "Receive": _S + "ReceiveResponse", "Signal": _S + "SignalResponse"}


@dataclass
class Request:
    """The parts of a WS-Management request the double acts on."""

    action: str
    message_id: str
    resource_uri: str
    shell_id: str | None
    max_envelope: int
    operation_timeout: float
    options: dict[str, str]
    body: ET.Element


def _q(prefix: str, tag: str) -> str:
    return f"{{{NS[prefix]}}}{tag}"


def _duration(text: str | None) -> float:
    if not text or not text.startswith("PT") or not text.endswith("S"):
        return 60.0
    return float(text[2:-1])


def parse_request(data: bytes) -> Request:
    """Parse a SOAP request; raises ``ValueError`` with a reason for anything malformed."""
    root = ET.fromstring(data)
    header = root.find(_q("s", "Header"))
    body = root.find(_q("s", "Body"))
    if header is None or body is None:
        raise ValueError("not a SOAP 1.2 envelope")
    action_uri = header.findtext(_q("a", "Action")) or ""
    message_id = header.findtext(_q("a", "MessageID")) or ""
    if not message_id:
        raise ValueError("missing a:MessageID")
    selector = header.find(f"{_q('w', 'SelectorSet')}/{_q('w', 'Selector')}[@Name='ShellId']")
    options = {o.get("Name", ""): o.text or "" for o in header.iter(_q("w", "Option"))}
    return Request(
        action=ACTIONS.get(action_uri, action_uri),
        message_id=message_id,
        resource_uri=header.findtext(_q("w", "ResourceURI")) or "",
        shell_id=selector.text if selector is not None else None,
        max_envelope=int(header.findtext(_q("w", "MaxEnvelopeSize")) or 153600),
        operation_timeout=_duration(header.findtext(_q("w", "OperationTimeout"))),
        options=options,
        body=body,
    )


def _head(action_uri: str, relates_to: str) -> str:
    return (f'<s:Envelope xml:lang="en-US" xmlns:s="{NS["s"]}" xmlns:a="{NS["a"]}" xmlns:x="{NS["x"]}" '
            f'xmlns:w="{NS["w"]}" xmlns:rsp="{NS["rsp"]}" xmlns:p="{NS["p"]}">'
            f"<s:Header><a:Action>{action_uri}</a:Action><a:MessageID>uuid:{uuid.uuid4()}</a:MessageID>"
            "<a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>"
            f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo></s:Header>")


def envelope(action: str, relates_to: str, body: str) -> bytes:
    """A response envelope for ``action`` (Create, Command, ...) with ``body`` inside ``s:Body``."""
    return (_head(_RESPONSE_ACTION[action], relates_to) + f"<s:Body>{body}</s:Body></s:Envelope>").encode()


def fault(relates_to: str, subcode: str, reason: str, wsman_code: int, *, machine: str = "winhost") -> bytes:
    """A SOAP fault as WinRM sends it (``s:Receiver`` + ``w:<subcode>`` + WSManFault detail)."""
    body = ('<s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>w:' + subcode +
            '</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">' + escape(reason) +
            '</s:Text></s:Reason><s:Detail><f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/'
            f'wsmanfault" Code="{wsman_code}" Machine="{machine}"><f:Message>{escape(reason)}</f:Message>'
            "</f:WSManFault></s:Detail></s:Fault>")
    return (_head("http://schemas.dmtf.org/wbem/wsman/1/wsman/fault", relates_to) +
            f"<s:Body>{body}</s:Body></s:Envelope>").encode()


def created(relates_to: str, shell_id: str, endpoint: str) -> bytes:
    return envelope("Create", relates_to, (
        f"<x:ResourceCreated><a:Address>{escape(endpoint)}</a:Address><a:ReferenceParameters>"
        f"<w:ResourceURI>{SHELL_URI}</w:ResourceURI><w:SelectorSet><w:Selector Name=\"ShellId\">{shell_id}"
        "</w:Selector></w:SelectorSet></a:ReferenceParameters></x:ResourceCreated>"
        f"<rsp:Shell><rsp:ShellId>{shell_id}</rsp:ShellId><rsp:ResourceUri>{SHELL_URI}</rsp:ResourceUri>"
        "<rsp:InputStreams>stdin</rsp:InputStreams><rsp:OutputStreams>stdout stderr</rsp:OutputStreams></rsp:Shell>"))


def receive_response(relates_to: str, command_id: str, stdout: bytes, stderr: bytes, exit_code: int) -> bytes:
    """All output at once in 8 KB stream chunks, End markers and CommandState Done with the exit code."""
    parts = []
    for name, data in (("stdout", stdout), ("stderr", stderr)):
        for i in range(0, len(data), 8192):
            chunk = base64.b64encode(data[i:i + 8192]).decode()
            parts.append(f'<rsp:Stream Name="{name}" CommandId="{command_id}">{chunk}</rsp:Stream>')
        parts.append(f'<rsp:Stream Name="{name}" CommandId="{command_id}" End="true"></rsp:Stream>')
    parts.append(f'<rsp:CommandState CommandId="{command_id}" State="{_S}CommandState/Done">'
                 f"<rsp:ExitCode>{exit_code}</rsp:ExitCode></rsp:CommandState>")
    return envelope("Receive", relates_to, "<rsp:ReceiveResponse>" + "".join(parts) + "</rsp:ReceiveResponse>")
