"""The capture file: one recorded session, written incrementally, read back whole.

Layout (docs/capture.md is the reference; all integers little-endian)::

    file    := magic "ANBCAP" (6 bytes)  version u16  record*
    record  := length u32  crc32 u32  body[length]        crc32 = zlib.crc32(body)
    body    := kind u8  content

    kind 1 HEADER   content = JSON (UTF-8): the upgrade request and its answer, redacted
    kind 2 MESSAGE  content = direction u8 (0 client->server, 1 server->client)
                              opcode u8 (1 text, 2 binary)  flags u8 (bit 0: redacted)
                              t f64 (monotonic seconds when it crossed the proxy)  payload
    kind 3 CLOSE    content = JSON {"t", "by", "code", "reason"}
    kind 4 NOTE     content = JSON {"t", "note"}: what the proxy saw go wrong
    kind 5 END      content = JSON {"t", "messages"}: the proxy finished this capture

Each record is written with one ``write`` call once its message has been forwarded,
so a proxy killed at any moment leaves a file of whole records: it reads up to the
last message forwarded (without an END record: :attr:`Capture.complete` is False).
A record cut short (a file truncated by other means) or whose checksum does not
match is a ``ValueError`` naming the file and the record's index; ``partial=True``
reads up to the last whole record instead of refusing a cut-off tail.
"""

from __future__ import annotations

import json
import os
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CAPTURE_SUFFIX",
    "MAGIC",
    "VERSION",
    "Capture",
    "CaptureMessage",
    "CaptureWriter",
    "read_capture",
]

MAGIC = b"ANBCAP"
VERSION = 1
CAPTURE_SUFFIX = ".anbcap"
MAX_RECORD = 256 * 1024 * 1024
"""A length beyond this is corruption, not a record (messages are at most 64 MiB)."""

HEADER, MESSAGE, CLOSE, NOTE, END = 1, 2, 3, 4, 5
CLIENT, SERVER = 0, 1
TEXT, BINARY = 1, 2
REDACTED = 1

_PREFIX = struct.Struct("<6sH")
_FRAME = struct.Struct("<II")
_MESSAGE = struct.Struct("<BBBBd")  # kind, direction, opcode, flags, t
_DIRECTIONS = {CLIENT: "client", SERVER: "server"}


# --------------------------------------------------------------------------- writing


class CaptureWriter:
    """Appends records to a new capture file, each with a single ``write``.

    Not thread-safe; one writer per session. Writes go to the kernel at once (no
    user-space buffer), so a killed process loses nothing it wrote."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        self.has_header = False
        self.messages = 0
        self.bytes = 0
        self._write(_PREFIX.pack(MAGIC, VERSION))

    def _write(self, data: bytes) -> None:
        fd = self._fd
        if fd is None:
            raise ValueError(f"{self.path}: the capture is closed")
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        self.bytes += len(data)

    def _record(self, body: bytes) -> None:
        self._write(_FRAME.pack(len(body), zlib.crc32(body)) + body)

    def _json(self, kind: int, content: dict[str, Any]) -> None:
        self._record(bytes([kind]) + json.dumps(content, separators=(",", ":"), sort_keys=True).encode("utf-8"))

    def header(self, content: dict[str, Any]) -> None:
        self._json(HEADER, {"format": "avatar_nb capture", "version": VERSION, **content})
        self.has_header = True

    def message(self, direction: int, t: float, data: bytes | str, *, redacted: bool = False) -> None:
        if isinstance(data, str):
            opcode, payload = TEXT, data.encode("utf-8")
        else:
            opcode, payload = BINARY, bytes(data)
        head = _MESSAGE.pack(MESSAGE, direction, opcode, REDACTED if redacted else 0, t)
        self._record(head + payload)
        self.messages += 1

    def close_record(self, by: str, code: int | None, reason: str = "", t: float | None = None) -> None:
        self._json(CLOSE, {"t": time.monotonic() if t is None else t, "by": by, "code": code, "reason": reason})

    def note(self, note: str, t: float | None = None) -> None:
        self._json(NOTE, {"t": time.monotonic() if t is None else t, "note": note})

    def end(self) -> None:
        """Write the END record and close the file (idempotent)."""
        if self._fd is None:
            return
        self._json(END, {"t": time.monotonic(), "messages": self.messages})
        self.close()

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class CaptureMessage:
    """One WebSocket message as it crossed the proxy."""

    index: int  # position among the capture's messages
    direction: str  # "client" (client -> server) or "server" (server -> client)
    t: float  # monotonic seconds (the proxy's clock) when the proxy read it
    data: bytes | str  # the payload: bytes for a binary message, str for a text one
    redacted: bool = False  # secrets were removed before it was written (an egress configuration)

    @property
    def text(self) -> bool:
        return isinstance(self.data, str)


@dataclass
class Capture:
    """A capture file read back: the upgrade, every message in order, the closes."""

    path: Path
    version: int
    header: dict[str, Any]
    messages: list[CaptureMessage] = field(default_factory=list)
    closes: list[dict[str, Any]] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)
    end: dict[str, Any] | None = None
    truncated: bool = False  # a cut-off last record was dropped (``partial=True``)

    @property
    def complete(self) -> bool:
        """Whether the proxy finished the capture (False for one killed mid-session)."""
        return self.end is not None

    @property
    def upgrade(self) -> dict[str, Any]:
        return dict(self.header.get("upgrade") or {})

    @property
    def status(self) -> int | None:
        """The upgrade's HTTP status (101 when the WebSocket opened)."""
        return self.upgrade.get("status")

    @property
    def app_id(self) -> str:
        return str(self.header.get("app_id") or "")

    @property
    def avatar_id(self) -> str:
        return str(self.header.get("avatar_id") or "")

    @property
    def close_code(self) -> int | None:
        """The first close code seen (either side), None when the connection just dropped."""
        for close in self.closes:
            if close.get("code") is not None:
                return int(close["code"])
        return None

    def client_messages(self) -> list[CaptureMessage]:
        return [m for m in self.messages if m.direction == "client"]

    def server_messages(self) -> list[CaptureMessage]:
        return [m for m in self.messages if m.direction == "server"]

    def __repr__(self) -> str:
        n_c = sum(1 for m in self.messages if m.direction == "client")
        state = "complete" if self.complete else "incomplete"
        return (
            f"<Capture {self.path.name} v{self.version} status={self.status} "
            f"messages={len(self.messages)} (client {n_c}, server {len(self.messages) - n_c}) {state}>"
        )


def read_capture(path: str | Path, *, partial: bool = False) -> Capture:
    """Read a capture file. ``ValueError`` (naming the file and the record) for a file that
    is not a capture, of another version, corrupt, or cut inside a record (unless
    ``partial``: then the whole records before the cut are returned, ``truncated`` set)."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < _PREFIX.size or data[: len(MAGIC)] != MAGIC:
        raise ValueError(f"{path}: not an avatar_nb capture file (no {MAGIC.decode()} magic at the start)")
    _, version = _PREFIX.unpack_from(data, 0)
    if version != VERSION:
        raise ValueError(
            f"{path}: capture format version {version}, this avatar_nb reads version {VERSION} (record 0)"
        )
    capture: Capture | None = None
    pos, index, n_messages = _PREFIX.size, 0, 0
    size = len(data)

    def where() -> str:
        return f"{path}: record {index} (message index {n_messages})"

    while pos < size:
        if size - pos < _FRAME.size:
            if partial:
                break
            raise ValueError(f"{where()}: the file ends inside a record's frame (truncated)")
        length, crc = _FRAME.unpack_from(data, pos)
        if length < 1 or length > MAX_RECORD:
            raise ValueError(f"{where()}: impossible record length {length} (corrupt)")
        if pos + _FRAME.size + length > size:
            if partial:
                break
            raise ValueError(
                f"{where()}: the file ends inside a record ({size - pos - _FRAME.size} of {length} bytes; truncated)"
            )
        body = data[pos + _FRAME.size : pos + _FRAME.size + length]
        if zlib.crc32(body) != crc:
            raise ValueError(f"{where()}: checksum mismatch (corrupt)")
        pos += _FRAME.size + length
        kind = body[0]
        if capture is None:
            if kind != HEADER:
                raise ValueError(f"{where()}: the first record must be the header, found kind {kind}")
            header = _json(body, where)
            if header.get("version") != VERSION:
                raise ValueError(f"{where()}: header says version {header.get('version')!r}, expected {VERSION}")
            capture = Capture(path=path, version=version, header=header)
        elif capture.end is not None:
            raise ValueError(f"{where()}: a record after the END record (corrupt)")
        elif kind == MESSAGE:
            if length < _MESSAGE.size:
                raise ValueError(f"{where()}: message record too short (corrupt)")
            _, direction, opcode, flags, t = _MESSAGE.unpack_from(body, 0)
            payload = body[_MESSAGE.size :]
            if direction not in _DIRECTIONS or opcode not in (TEXT, BINARY):
                raise ValueError(f"{where()}: unknown direction {direction} or opcode {opcode} (corrupt)")
            if opcode == TEXT:
                try:
                    content: bytes | str = payload.decode("utf-8")
                except UnicodeDecodeError:
                    raise ValueError(f"{where()}: a text message that is not UTF-8 (corrupt)") from None
            else:
                content = payload
            capture.messages.append(
                CaptureMessage(n_messages, _DIRECTIONS[direction], t, content, bool(flags & REDACTED))
            )
            n_messages += 1
        elif kind == CLOSE:
            capture.closes.append(_json(body, where))
        elif kind == NOTE:
            capture.notes.append(_json(body, where))
        elif kind == END:
            capture.end = _json(body, where)
        elif kind == HEADER:
            raise ValueError(f"{where()}: a second header record (corrupt)")
        else:
            raise ValueError(f"{where()}: unknown record kind {kind}")
        index += 1
    if capture is None:
        raise ValueError(f"{path}: record 0 (message index 0): the capture has no header record (truncated)")
    capture.truncated = pos < size
    return capture


def _json(body: bytes, where: Any) -> dict[str, Any]:
    try:
        value = json.loads(body[1:].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError(f"{where()}: a JSON record that does not parse (corrupt)") from None
    if not isinstance(value, dict):
        raise ValueError(f"{where()}: a JSON record that is not an object (corrupt)")  # noqa: TRY004 - corrupt data, not a caller error
    return value
