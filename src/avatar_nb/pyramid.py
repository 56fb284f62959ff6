"""Multi-resolution views of long series: answer any window at any width from a pyramid.

A :class:`SeriesPyramid` holds one series (or several sharing one time axis, as the
columns of a 2-D array) sampled at a fixed ``rate``, summarised by the compiled core
(:mod:`avatar_nb._pyramid`) as min/max per bucket at power-of-two bucket sizes from
``base`` samples up. :meth:`SeriesPyramid.window` answers a view ``[t0, t1)`` drawn
``pixels`` wide from the level whose buckets are the smallest that are still at least a
pixel wide, so a view of an hour costs what a view of a second costs: at most about one
bucket (a min and a max) per pixel per series. Views finer than the finest level read
the samples themselves (min = max = the sample).

Memory: with ``base`` samples per finest bucket, the levels hold ``4 / base`` float32
values per input sample and column (two per bucket, the levels summing to twice the
finest), a quarter of a float64 series' bytes at ``base=16`` and half of an int16
series' bytes at ``base=16``; audio uses ``base=32``. The series itself is referenced,
not copied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _pyramid

__all__ = ["SeriesPyramid", "View"]


@dataclass(frozen=True)
class View:
    """What a window holds at one level: bucket start times (s), mins and maxs (float32).

    ``level`` is ``-1`` for the samples themselves, else the pyramid level (bucket size
    ``bucket`` samples); ``mins`` and ``maxs`` have one row per bucket (and the series'
    columns when it has several)."""

    level: int
    bucket: int
    times: np.ndarray
    mins: np.ndarray
    maxs: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.times.nbytes + self.mins.nbytes + self.maxs.nbytes)


class SeriesPyramid:
    """Min/max pyramid of ``values`` (1-D, or 2-D ``(n, columns)``) sampled at ``rate`` per
    second from time ``start`` (s). ``base`` is the finest bucket, in samples (a power of two)."""

    def __init__(self, values: Any, rate: float, *, start: float = 0.0, base: int = 16) -> None:
        if not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0):
            raise ValueError(f"rate must be a positive number of samples per second, got {rate!r}")
        if not (isinstance(base, int) and base >= 1 and base & (base - 1) == 0):
            raise ValueError(f"base must be a power of two number of samples, got {base!r}")
        self.values = np.asarray(values)
        if self.values.ndim not in (1, 2):
            raise ValueError(f"values must be 1-D or 2-D (n, columns), got shape {self.values.shape}")
        self.rate = float(rate)
        self.start = float(start)
        self.base = base
        self.n = int(self.values.shape[0])
        self.levels: list[tuple[np.ndarray, np.ndarray]] = []
        if self.n > base:
            level = _pyramid.bucket_minmax(self.values, base)
            self.levels.append(level)
            while level[0].shape[0] > 1:
                level = _pyramid.halve_minmax(*level)
                self.levels.append(level)

    @property
    def duration(self) -> float:
        return self.n / self.rate

    @property
    def nbytes(self) -> int:
        """Bytes the levels hold (the series itself is not counted: it is not copied)."""
        return sum(lo.nbytes + hi.nbytes for lo, hi in self.levels)

    def bucket(self, level: int) -> int:
        """Samples per bucket at ``level`` (1 for ``-1``, the samples themselves)."""
        return 1 if level < 0 else self.base << level

    def level_for(self, t0: float, t1: float, pixels: int) -> int:
        """The level a ``[t0, t1)`` view ``pixels`` wide reads: the finest whose buckets are
        at least one pixel wide, or ``-1`` (the samples) when there are fewer samples than
        two per pixel."""
        if pixels <= 0:
            raise ValueError(f"pixels must be positive, got {pixels!r}")
        per_pixel = max(t1 - t0, 0.0) * self.rate / pixels
        if per_pixel < 2 or not self.levels:
            return -1
        level = math.ceil(math.log2(per_pixel / self.base)) if per_pixel > self.base else 0
        return min(max(level, 0), len(self.levels) - 1)

    def window(self, t0: float, t1: float, pixels: int) -> View:
        """The buckets of the level :meth:`level_for` picks that overlap ``[t0, t1)``."""
        if not (math.isfinite(t0) and math.isfinite(t1)) or t1 < t0:
            raise ValueError(f"a window needs finite t0 <= t1, got [{t0!r}, {t1!r})")
        level = self.level_for(t0, t1, pixels)
        size = self.bucket(level)
        i0 = max(0, math.floor((t0 - self.start) * self.rate / size))
        i1 = max(i0, math.ceil((t1 - self.start) * self.rate / size))
        if level < 0:
            raw = self.values[i0:i1]
            if raw.dtype == np.int16:
                raw = raw.astype(np.float32) / np.float32(32768.0)
            else:
                raw = raw.astype(np.float32, copy=False)
            lo = hi = raw
        else:
            mins, maxs = self.levels[level]
            lo, hi = mins[i0:i1], maxs[i0:i1]
        times = self.start + np.arange(i0, i0 + lo.shape[0], dtype=np.float64) * (size / self.rate)
        return View(level, size, times, lo, hi)
