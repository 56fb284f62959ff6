"""Analyses of runs: the audio-to-motion offset of one run, statistics across many.

- :func:`av_offset`: how far the mouth lags (or leads) the audio in one Timeline, from
  the cross-correlation of the audio's loudness envelope with the jaw opening, refined
  below one keyframe period.
- :func:`summarize`: per condition of a runs table (a sweep's ``.runs``), the mean,
  percentiles and a seeded bootstrap confidence interval of the mean of a figure.

Everything is in seconds; milliseconds appear only in the text made for people.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .flame import SCALAR_CHANNELS

if TYPE_CHECKING:
    import pandas as pd

    from .timeline import Timeline

__all__ = ["AVOffset", "av_offset", "keyframe_quantiles", "loudness_envelope", "summarize"]

# Below this many dB under the loudest stretch, audio counts as silence: the envelope's
# floor, so the noise floor of pauses does not dominate the correlation.
_ENVELOPE_RANGE_DB = 50.0


@dataclass(frozen=True)
class AVOffset:
    """The audio-to-motion offset of one run, as :func:`av_offset` found it.

    ``lag`` (s): positive when the mouth lags the audio (opens after the sound), negative
    when it leads. ``confidence``: the correlation (0..1) of the envelope's and the jaw's
    frame-to-frame changes at that lag; below about 0.5 the estimate is not to be
    trusted (little speech, or motion unrelated to loudness). ``lags`` (s) and
    ``correlation`` are the whole curve the peak was taken from (``plots.av_offset``
    draws it).
    """

    lag: float
    confidence: float
    lags: np.ndarray = field(repr=False)
    correlation: np.ndarray = field(repr=False)
    resolution: float = 0.001

    def __repr__(self) -> str:
        if not math.isfinite(self.lag):
            return "<AVOffset undetermined>"
        way = "lags" if self.lag >= 0 else "leads"
        return f"<AVOffset mouth {way} audio by {abs(self.lag) * 1000:.1f} ms, confidence {self.confidence:.2f}>"


def loudness_envelope(
    samples: np.ndarray, sample_rate: int, window: float, hop: float
) -> np.ndarray:
    """Loudness (dB, floored ``50 dB`` under the peak) of ``[t, t + window)`` for ``t = 0, hop, 2 hop ...``.

    ``samples`` are mono (int16 or float); windows run while they fit in the audio.
    """
    x = np.asarray(samples)
    x = x.astype(np.float64) / 32768.0 if x.dtype == np.int16 else x.astype(np.float64)
    win = max(1, round(window * sample_rate))
    step = hop * sample_rate
    if x.shape[0] < win:
        return np.zeros(0)
    energy = np.concatenate(([0.0], np.cumsum(x * x)))
    starts = np.round(np.arange(0, x.shape[0] - win + 1, step)).astype(np.int64)
    starts = starts[starts + win <= x.shape[0]]
    rms = np.sqrt(np.maximum(energy[starts + win] - energy[starts], 0.0) / win)
    db = 20.0 * np.log10(rms + 1e-9)
    return np.maximum(db, db.max() - _ENVELOPE_RANGE_DB)


def av_offset(
    timeline: Timeline,
    *,
    max_lag: float = 0.3,
    resolution: float = 0.001,
    channel: str = "jaw_open",
) -> AVOffset:
    """The lag between the audio's loudness envelope and mouth opening in ``timeline``.

    The envelope is the loudness of each keyframe-long window of the sent audio, computed
    every ``resolution`` seconds (finer than a keyframe period); for each candidate lag
    in ``[-max_lag, max_lag]`` the envelope is read at every keyframe's media time minus
    the lag and correlated with the ``channel`` (default ``jaw_open``). Both series are
    differenced first: a face opens its mouth at the onsets of sound, and correlating
    changes keeps a mouth that closes more slowly than it opens from pulling the peak
    late. The peak is refined by a parabola through it and its neighbours.

    The estimate is the lag of the motion as it is, smoothing included: a jaw that
    follows loudness directly reads 0 to a fraction of a millisecond, while the local
    service's animator, which smooths loudness as a jaw moves (a fast attack, a slower
    release), puts its mouth about 5 ms (3-7 ms by clip) behind the sound at
    ``av_offset_ms=0``. Against the local service, compare runs with the run at
    offset 0 to recover ``av_offset_ms`` itself.

    Needs the audio that was sent (``timeline.audio`` with ``timeline.sample_rate``) and
    at least a second of keyframes; ``ValueError`` says what is missing.
    """
    if not (isinstance(max_lag, (int, float)) and max_lag > 0):
        raise ValueError(f"max_lag must be a positive number of seconds, got {max_lag!r}")
    if not (isinstance(resolution, (int, float)) and 0 < resolution <= max_lag):
        raise ValueError(
            f"resolution must be a positive number of seconds up to max_lag, got {resolution!r}"
        )
    if channel not in SCALAR_CHANNELS:
        raise ValueError(f"channel must be one of {', '.join(SCALAR_CHANNELS)}, got {channel!r}")
    if timeline.audio is None or not timeline.sample_rate:
        raise ValueError(
            "av_offset needs the audio that was sent: the timeline has no audio or no sample_rate"
        )
    motion = np.asarray(timeline.channel(channel), dtype=np.float64)
    times = np.asarray(timeline.media_time, dtype=np.float64)
    fps = float(timeline.fps)
    if motion.shape[0] < max(8, int(fps)):
        raise ValueError(
            f"av_offset needs at least a second of keyframes, the timeline has {motion.shape[0]}"
        )

    envelope = loudness_envelope(timeline.audio, int(timeline.sample_rate), 1.0 / fps, resolution)
    steps = round(max_lag / resolution)
    lag_steps = np.arange(-steps, steps + 1)
    position = times / resolution  # keyframe k's envelope index at lag 0
    correlation = np.full(lag_steps.shape[0], np.nan)
    # only keyframes whose envelope exists at every lag: the same frames for every lag,
    # so the curve compares like with like
    index0 = np.round(position).astype(np.int64)
    usable = (index0 - steps >= 0) & (index0 + steps < envelope.shape[0])
    # differences between consecutive keyframes of one utterance only
    pairs = usable[1:] & usable[:-1] & (np.diff(times) < 1.5 / fps)
    if pairs.sum() < 8:
        raise ValueError("av_offset found too few keyframes with audio around them to correlate")
    d_motion = np.diff(motion)[pairs]
    d_motion = d_motion - d_motion.mean()
    motion_norm = np.sqrt(np.dot(d_motion, d_motion))
    for i, lag in enumerate(lag_steps):
        # mouth lags by `lag`: the keyframe at t shows the sound at t - lag
        env = envelope[np.clip(index0 - lag, 0, envelope.shape[0] - 1)]  # clipped ones are masked
        d_env = np.diff(env)[pairs]
        d_env = d_env - d_env.mean()
        denom = motion_norm * np.sqrt(np.dot(d_env, d_env))
        correlation[i] = np.dot(d_env, d_motion) / denom if denom > 0 else np.nan
    lags = lag_steps * resolution
    if not np.isfinite(correlation).any():
        return AVOffset(math.nan, 0.0, lags, correlation, resolution)
    k = int(np.nanargmax(correlation))
    peak = float(lags[k])
    if 0 < k < correlation.shape[0] - 1 and np.isfinite(correlation[k - 1 : k + 2]).all():
        left, mid, right = correlation[k - 1], correlation[k], correlation[k + 1]
        curvature = left - 2 * mid + right
        if curvature < 0:
            peak += 0.5 * (left - right) / curvature * resolution
    confidence = float(min(1.0, max(0.0, correlation[k])))
    return AVOffset(peak, confidence, lags, correlation, resolution)


def summarize(
    runs: pd.DataFrame,
    by: str | Sequence[str] = (),
    value: str | Sequence[str] = "latency_p50",
    *,
    percentiles: Sequence[float] = (50, 90, 99),
    ci: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    only_ok: bool = True,
) -> pd.DataFrame:
    """Per condition: count, mean, std, percentiles and a bootstrap CI of the mean of ``value``.

    ``runs`` is a runs table (one row per run, e.g. ``sweep(...).runs``); ``by`` the
    columns that make a condition; ``value`` one column or several (the result is long:
    one row per condition and value). The confidence interval is the percentile
    bootstrap of the mean with ``n_boot`` resamples from a generator seeded with
    ``seed``, so the same table gives the same interval. Runs whose ``status`` is not
    ``"ok"`` are left out unless ``only_ok=False``; NaN values are left out.
    """
    import pandas as pd

    by_cols = [by] if isinstance(by, str) else list(by)
    values = [value] if isinstance(value, str) else list(value)
    missing = [c for c in [*by_cols, *values] if c not in runs.columns]
    if missing:
        raise KeyError(f"columns {missing} are not in the runs table; it has {list(runs.columns)}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be between 0 and 1, got {ci!r}")
    if not (isinstance(n_boot, int) and n_boot >= 1):
        raise ValueError(f"n_boot must be an int >= 1, got {n_boot!r}")
    table = runs
    if only_ok and "status" in table.columns:
        table = table[table["status"] == "ok"]
    groups = table.groupby(by_cols, sort=True, dropna=False) if by_cols else [((), table)]
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    alpha = (1.0 - ci) / 2.0
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        for name in values:
            x = pd.to_numeric(group[name], errors="coerce").to_numpy(dtype=np.float64)
            x = x[np.isfinite(x)]
            row: dict[str, Any] = dict(zip(by_cols, key))
            row.update({"value": name, "n": int(x.size)})
            if x.size:
                row["mean"] = float(x.mean())
                row["std"] = float(x.std(ddof=1)) if x.size > 1 else math.nan
                for p in percentiles:
                    row[f"p{p:g}"] = float(np.percentile(x, p))
                means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
                row["ci_low"], row["ci_high"] = (
                    float(v) for v in np.quantile(means, [alpha, 1 - alpha])
                )
            else:
                row.update(
                    {"mean": math.nan, "std": math.nan, "ci_low": math.nan, "ci_high": math.nan}
                )
                row.update({f"p{p:g}": math.nan for p in percentiles})
            rows.append(row)
    columns = [
        *by_cols,
        "value",
        "n",
        "mean",
        "std",
        *(f"p{p:g}" for p in percentiles),
        "ci_low",
        "ci_high",
    ]
    return pd.DataFrame(rows, columns=columns)


def keyframe_quantiles(
    keyframes: Any,
    by: str | Sequence[str] = "run_id",
    value: str = "latency",
    q: Sequence[float] = (0.5, 0.9, 0.99),
) -> pd.DataFrame:
    """Exact quantiles of a per-keyframe figure per group, from a pandas or dask frame.

    ``keyframes`` is a per-keyframe table (``load_results(path).keyframes(...)``, with
    ``with_runs=[...]`` for conditions); with ``engine="dask"`` only the grouping
    columns and ``value`` are shuffled, so a study larger than memory is summarised out
    of core. Returns a pandas DataFrame: the ``by`` columns, then ``<value>_p<q>``.
    """
    import pandas as pd

    by_cols = [by] if isinstance(by, str) else list(by)
    qs = [float(x) for x in q]
    if not qs or not all(0.0 <= x <= 1.0 for x in qs):
        raise ValueError(f"q must be quantiles between 0 and 1, got {list(q)!r}")
    names = [f"{value}_p{x * 100:g}" for x in qs]

    def per_group(values: Any) -> Any:
        finite = np.asarray(values, dtype=np.float64)
        finite = finite[np.isfinite(finite)]
        return tuple(np.quantile(finite, qs)) if finite.size else (math.nan,) * len(qs)

    narrow = keyframes[[*by_cols, value]]
    grouped = narrow.groupby(by_cols)[value]
    if hasattr(keyframes, "dask"):  # a dask frame: one shuffle of the narrow table
        series = grouped.apply(per_group, meta=(value, "object")).compute()
    else:
        series = grouped.apply(per_group)
    table = pd.DataFrame(series.tolist(), columns=names, index=series.index).reset_index()
    return table.sort_values(by_cols, kind="stable").reset_index(drop=True)
