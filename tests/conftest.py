"""Shared fixtures: embedded services on loopback, and small helpers for raw protocol tests."""

from __future__ import annotations

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
