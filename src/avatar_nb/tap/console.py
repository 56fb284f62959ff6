"""The console log: every console (HTTP) request the tap forwarded, one JSON line each.

A tap run writes ``console.jsonl`` in its output folder, next to the captures: one
line per console request (the token requests above all), appended with a single
``write`` once the answer is known, so a killed proxy leaves whole lines. Each line
holds ``time`` (UTC, ISO 8601), ``t`` (the proxy's monotonic clock when the request
arrived, the clock of the captures' ``t_upgrade`` and message times), ``method``,
``path``, ``query`` (credentials redacted), ``upstream`` (the URL it went to, without
its query), ``status`` (502 with the reason when the upstream could not be reached;
null when the proxy stopped first), ``seconds`` (from the request's arrival to its
answer read whole), ``request_bytes``, ``response_bytes``, ``content_type``,
``request_headers`` (redacted as the upgrade's: no API key), ``body`` (the answer's JSON
when it is at most :data:`MAX_BODY` bytes, unencoded, with every credential replaced
by ``<redacted>``: never a session token), ``body_note`` (why no body was kept) and
``error`` (the error message of a refusal: the JSON's ``message``, ``detail``,
``title`` or ``error``). Request bodies are never written, only their size.

The lines are kept apart from the capture files because a console request belongs to
no WebSocket session (a refused token request never leads to one), and the capture
format stays as it is: its readers refuse unknown record kinds.
:func:`read_console` reads a folder's (or a file's) lines as a DataFrame.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .redact import REDACTED, redact_json, redact_query, secret_name

__all__ = ["CONSOLE_COLUMNS", "CONSOLE_LOG", "MAX_BODY", "ConsoleLog", "console_entry", "read_console"]

logger = logging.getLogger("avatar_nb.tap")

CONSOLE_LOG = "console.jsonl"
MAX_BODY = 4096
"""Bytes: a longer answer body is not kept (its size is; ``body_note`` says why)."""
_MAX_HEADERS = 32  # request headers kept per line, each value cut to _MAX_HEADER_VALUE characters
_MAX_HEADER_VALUE = 256
_MAX_TEXT = 512  # characters of an error message or a path kept

CONSOLE_COLUMNS = [
    "time", "t", "method", "path", "query", "upstream", "status", "seconds", "request_bytes",
    "response_bytes", "content_type", "error", "body", "body_note", "request_headers",
]


def _cut(text: str, limit: int = _MAX_TEXT) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _without_userinfo(url: str) -> str:
    """A URL without the ``user:password@`` a console URL may carry."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, parts.query, parts.fragment))


def _error_text(body: Any) -> str | None:
    """The error message a JSON answer carries: ``message``, ``detail``, ``title`` or
    ``error`` (the first of an ``errors`` list likewise)."""
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            found = _error_text(errors[0])
            if found:
                return found
        for key in ("message", "detail", "title", "error"):
            value = body.get(key)
            if isinstance(value, str) and value and value != REDACTED:
                return value
            if isinstance(value, dict):
                found = _error_text(value)
                if found:
                    return found
    return None


def console_entry(
    *,
    time: str,
    t: float,
    method: str,
    path: str,
    query: str,
    upstream: str,
    request_headers: Iterable[tuple[str, str]],
    request_bytes: int,
    status: int | None,
    seconds: float,
    response_headers: Any = None,
    content: bytes = b"",
    error: str | None = None,
) -> dict[str, Any]:
    """One console request as its log line (a dict), every credential redacted: the
    request's credential header values are also looked for in the answer's strings."""
    request_headers = list(request_headers)
    secrets = [str(v) for k, v in request_headers if secret_name(str(k)) and str(v)]
    kept = [
        [str(k), REDACTED if secret_name(str(k)) else _cut(str(v), _MAX_HEADER_VALUE)]
        for k, v in request_headers[:_MAX_HEADERS]
    ]
    get = response_headers.get if response_headers is not None else (lambda _k, d=None: d)
    content_type = str(get("Content-Type", "") or "")
    encoding = str(get("Content-Encoding", "") or "").strip().lower()
    body: Any = None
    note: str | None = None
    if not content:
        note = "empty"
    elif len(content) > MAX_BODY:
        note = f"not kept: {len(content)} bytes, more than {MAX_BODY}"
    elif encoding not in ("", "identity"):
        note = f"not kept: encoded ({encoding})"
    elif "json" not in content_type.lower():
        note = f"not kept: not JSON ({content_type or 'no content type'})"
    else:
        try:
            parsed = json.loads(content)
        except (ValueError, RecursionError):
            note = "not kept: does not parse as JSON"
        else:
            body = redact_json(parsed, secrets)
    if error is None:
        error = _error_text(body) if status is None or status >= 400 else None
    return {
        "time": time,
        "t": t,
        "method": method,
        "path": _cut(path),
        "query": _cut(redact_query(query)) if query else "",
        "upstream": _cut(_without_userinfo(upstream)),
        "status": status,
        "seconds": seconds,
        "request_bytes": request_bytes,
        "response_bytes": len(content),
        "content_type": _cut(content_type, _MAX_HEADER_VALUE),
        "error": _cut(error) if error else None,
        "body": body,
        "body_note": note,
        "request_headers": kept,
    }


class ConsoleLog:
    """Appends lines to a folder's ``console.jsonl``, each with one ``write`` (opened at
    the first line, so a run without console requests leaves no file)."""

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / CONSOLE_LOG
        self._fd: int | None = None
        self._closed = False  # a line after close() (a request the stop cut short) opens and closes the file again
        self.lines = 0

    def write(self, entry: dict[str, Any]) -> None:
        """Append one line; a file that cannot be written is logged, not raised (the
        request it describes was answered whatever happens here)."""
        data = (json.dumps(entry, separators=(",", ":"), ensure_ascii=True) + "\n").encode("ascii")
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError as exc:
            logger.warning("console request not recorded in %s: %s", self.path, exc)
            return
        finally:
            if self._closed:
                self.close()
        self.lines += 1

    def open(self) -> None:
        """Keep the file open between lines again (a proxy started anew)."""
        self._closed = False

    def close(self) -> None:
        self._closed = True
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def read_console(path: str | Path, *, partial: bool = False) -> Any:
    """The console requests a tap run recorded, as a pandas DataFrame (one row per
    request, the columns of :data:`CONSOLE_COLUMNS`; ``seconds`` in seconds, ``time`` a
    UTC timestamp). ``path`` is a tap's output folder or its ``console.jsonl``; a folder
    without one (captures written before console requests were recorded, or a run
    without any) gives an empty frame with the same columns.

    ``ValueError`` naming the file and the line for a line that does not parse, or for
    a last line without its newline (cut off by other means than the proxy's own
    writes; ``partial=True`` leaves it out instead)."""
    import pandas as pd

    path = Path(path)
    file = path / CONSOLE_LOG if path.is_dir() else path
    rows: list[dict[str, Any]] = []
    if file.exists():
        data = file.read_bytes()
        lines = data.split(b"\n")
        tail = lines.pop()  # b"" after a final newline
        if tail:
            if not partial:
                raise ValueError(f"{file}: line {len(lines) + 1} ends without a newline (cut off)")
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise ValueError(f"{file}: line {number} does not parse as JSON (corrupt)") from None
            if not isinstance(row, dict):
                raise ValueError(f"{file}: line {number} is not a JSON object (corrupt)")
            rows.append(row)
    frame = pd.DataFrame(rows, columns=CONSOLE_COLUMNS)
    frame["time"] = pd.to_datetime(frame["time"], utc=True, format="ISO8601")
    for column in ("t", "seconds"):
        frame[column] = frame[column].astype("float64")
    for column in ("status", "request_bytes", "response_bytes"):
        frame[column] = frame[column].astype("Int64")
    return frame
