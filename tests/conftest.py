"""Shared fixtures: embedded services on loopback, and small helpers for raw protocol tests."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from avatar_nb import _pcm
from avatar_nb.audio import speech_like
from avatar_nb.server import LocalService


@pytest.fixture(scope="session")
def service():
    """A fast (unpaced) local service shared by the whole run, in a background thread."""
    with LocalService(realtime=False) as svc:
        yield svc


@pytest.fixture
def realtime_service():
    """A paced local service (80 ms processing latency), one per test."""
    with LocalService(realtime=True, latency_ms=80.0) as svc:
        yield svc


@pytest.fixture(scope="session")
def speech_pcm() -> bytes:
    """2 s of speech-like audio as 16 kHz mono s16le."""
    return _pcm.to_s16le(speech_like(2.0, 16000, seed=7))


def _is_loopback(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    if host.lower() in ("localhost", "ip6-localhost", "ip6-loopback"):
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture
def loopback_only(monkeypatch):
    """Refuse (and record) any name lookup or connection to a host that is not loopback.

    Yields the list of hosts something tried to reach. Libraries that swallow the
    refusal (e.g. a config lookup with a fallback) still leave their attempt here.
    """
    attempts: list[str] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def check(family: int, address: object) -> None:
        if family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            attempts.append(str(address[0]))
            raise OSError(f"tests may only reach loopback, not {address[0]!r}")

    def connect(self, address):
        check(self.family, address)
        return real_connect(self, address)

    def connect_ex(self, address):
        check(self.family, address)
        return real_connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if host is not None and not _is_loopback(host):
            attempts.append(str(host))
            raise socket.gaierror(socket.EAI_NONAME, f"tests may only reach loopback, not {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield attempts
