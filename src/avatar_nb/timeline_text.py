"""A :class:`~avatar_nb.Timeline` as text for people: its ``repr``, its notebook HTML, times in ms.

Everything here works from :meth:`Timeline.summary` (a dict of plain values), so it
needs no timeline: the one-line ``repr``, the HTML table a notebook shows, the state
of the run's requests in words, :func:`ms_text` for a time in seconds and
:func:`speed_text` for how fast a run went.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

__all__ = ["ms_text", "speed_text", "state_text", "summary_html", "summary_repr", "times_real_time"]


def ms_text(seconds: float | None) -> str:
    """A time in seconds as text for people: milliseconds (``"12.3 ms"``), ``"n/a"`` for None."""
    return "n/a" if seconds is None else f"{seconds * 1000:.1f} ms"


def times_real_time(real_time_factor: float | None) -> str:
    """A real-time factor as a multiple of real time, for people: ``0.0032`` -> ``"310x"``,
    ``0.4`` -> ``"2.5x"``; ``"n/a"`` for None, zero or NaN. Two significant figures at least,
    whole numbers from 10x up."""
    if real_time_factor is None or not real_time_factor > 0:  # NaN is not > 0 either
        return "n/a"
    speed = 1.0 / real_time_factor
    if speed >= 10:
        return f"{speed:.0f}x"
    return f"{speed:.1f}x" if speed >= 1 else f"{speed:.2g}x"


def speed_text(s: dict[str, Any]) -> tuple[str, str]:
    """How fast a run went, from its :meth:`Timeline.summary`, as ``(name, value)``.

    Under ``"fast"`` pacing the real-time factor is the service's processing speed and
    reads best as a multiple of real time: ``("processing speed", "310x real time")``.
    Paced runs keep up with their pacing by construction; for them the factor itself says
    how far behind real time the last frame came: ``("real-time factor", "1.03")``."""
    rtf = s["real_time_factor"]
    if s["pacing"] == "fast":
        speed = times_real_time(rtf)
        return "processing speed", speed if speed == "n/a" else f"{speed} real time"
    return "real-time factor", "n/a" if rtf is None else f"{rtf:.2f}"


def state_text(s: dict[str, Any]) -> str:
    """What became of a run's requests, from its :meth:`Timeline.summary`: ``"complete"``,
    else the counts of the requests not ended normally (``"1 interrupted, 1 failed"``),
    else ``"incomplete"``."""
    if s["complete"]:
        return "complete"
    parts = [f"{s[k]} {k}" for k in ("interrupted", "preempted", "failed") if s[k]]
    return ", ".join(parts) if parts else "incomplete"


def summary_repr(s: dict[str, Any]) -> str:
    """The one-line ``repr`` of a timeline from its :meth:`Timeline.summary`."""
    audio = "n/a" if s["audio_seconds"] is None else f"{s['audio_seconds']:.2f} s audio"
    name, speed = speed_text(s)
    speed = f"processing {speed}" if name == "processing speed" else f"RTF {speed}"
    error_text = f", {s['errors']} error(s)" if s["errors"] else ""
    return (
        f"<Timeline {s['keyframes']} keyframes (E={s['expression_dims']}) @ {s['fps']:g} fps, "
        f"{audio}, {s['requests']} request(s), {s['pacing']} pacing, "
        f"first frame {ms_text(s['first_frame_latency'])}, latency p99 {ms_text(s['latency_p99'])}, "
        f"jitter {ms_text(s['jitter'])}, {speed}, {state_text(s)}{error_text}>"
    )


def summary_html(s: dict[str, Any], errors: Sequence[str] = ()) -> str:
    """The notebook view (HTML table) of a timeline from its :meth:`Timeline.summary` and
    its errors (the first ten are listed)."""
    fast = s["pacing"] == "fast"
    lateness = (
        "n/a under fast pacing"
        if fast
        else f"{ms_text(s['lateness_p50'])} / {ms_text(s['lateness_p99'])}"
    )
    rows = [
        ("keyframes", f"{s['keyframes']} (E = {s['expression_dims']})"),
        ("frame rate", f"{s['fps']:g} fps"),
        ("audio", "n/a" if s["audio_seconds"] is None else f"{s['audio_seconds']:.2f} s @ {s['sample_rate']} Hz"),
        ("pacing", s["pacing"]),
        ("requests", str(s["requests"])),
        ("first-frame latency", ms_text(s["first_frame_latency"])),
        ("latency p50 / p99", f"{ms_text(s['latency_p50'])} / {ms_text(s['latency_p99'])}"),
        ("lateness p50 / p99", lateness),
        ("inter-arrival jitter", ms_text(s["jitter"])),
        speed_text(s),
        ("complete", "yes" if s["complete"] else f"no ({state_text(s)})"),
    ]
    if s["anomalies"]:
        rows.append(("anomalies", str(s["anomalies"])))
    body = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
        for k, v in rows
    )
    listed = "".join(f"<li>{html.escape(e)}</li>" for e in list(errors)[:10])
    if listed:
        listed = f"<div><b>errors</b><ul>{listed}</ul></div>"
    return f"<div><b>Timeline</b><table>{body}</table>{listed}</div>"
