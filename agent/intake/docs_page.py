"""``/docs``: the API reference rendered on the server from the OpenAPI schema — no script, no CDN.

Why not FastAPI's Swagger UI: it loads its JavaScript and CSS from a public CDN, which a daemon on an isolated
management network cannot reach (and a page that pulls third-party code into the console of a containment tool
is a risk of its own). This page is plain HTML built from ``/openapi.json``: every path with its method,
summary, authentication, request body example and answers; the machine-readable schema stays at
``/openapi.json``.
"""

from __future__ import annotations

import html
import json
from typing import Any

__all__ = ["render_docs"]

_CSS = ("body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:980px;color:#222}"
        "h2{border-bottom:1px solid #ccc;padding-bottom:.2em}code,pre{background:#f4f4f4;padding:2px 4px}"
        "pre{padding:.6em;overflow:auto}.m{display:inline-block;min-width:4em;font-weight:bold}"
        ".s{color:#555}table{border-collapse:collapse}td{padding:2px 10px;vertical-align:top}")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def render_docs(schema: dict[str, Any]) -> str:
    info = schema.get("info", {})
    schemes = schema.get("components", {}).get("securitySchemes", {})
    head = (f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(info.get('title', 'API'))}</title>"
            f"<style>{_CSS}</style></head><body><h1>{_e(info.get('title', 'API'))} "
            f"<small class='s'>{_e(info.get('version', ''))}</small></h1>"
            f"<p>{_e(info.get('description', ''))}</p><p>Machine-readable: <a href='/openapi.json'>/openapi.json</a>"
            "</p><h2>Authentication</h2><table>")
    parts = [head]
    for name, scheme in schemes.items():
        kind = scheme.get("scheme") or scheme.get("in", "")
        parts.append(f"<tr><td><code>{_e(name)}</code></td><td>{_e(scheme.get('type'))} {_e(kind)} "
                     f"{_e(scheme.get('name', ''))}</td><td>{_e(scheme.get('description', ''))}</td></tr>")
    parts.append("</table><h2>Endpoints</h2>")
    for path, ops in schema.get("paths", {}).items():
        for method, op in ops.items():
            auth = " or ".join(k for req in op.get("security", []) for k in req) or "none"
            parts.append(f"<h3><span class='m'>{_e(method.upper())}</span> <code>{_e(path)}</code></h3>"
                         f"<p>{_e(op.get('summary', ''))} <span class='s'>— auth: {_e(auth)}</span></p>")
            if op.get("description"):
                parts.append(f"<p class='s'>{_e(op['description'])}</p>")
            body = op.get("requestBody", {}).get("content", {})
            for media, spec in body.items():
                for label, example in (spec.get("examples") or {}).items():
                    value = example.get("value")
                    text = value if isinstance(value, str) else json.dumps(value, indent=1)
                    parts.append(f"<p class='s'>{_e(media)} — {_e(example.get('summary', label))}</p>"
                                 f"<pre>{_e(text)}</pre>")
            answers = ", ".join(f"{_e(code)} {_e(r.get('description', ''))}"
                                for code, r in op.get("responses", {}).items())
            parts.append(f"<p class='s'>Answers: {answers}</p>")
    parts.append("</body></html>")
    return "".join(parts)
