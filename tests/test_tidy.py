"""Tidy exports of a Timeline: lengths, columns, dtypes, values, and exact Parquet round trips."""

from __future__ import annotations

import builtins

import numpy as np
import pandas as pd
import pytest

from avatar_nb import flame
from avatar_nb.timeline import Timeline

from .test_timeline import make_run


def test_keyframe_table_columns_dtypes_and_values():
    tl = make_run()
    df = tl.to_pandas()
    assert df is not None and len(df) == tl.n_keyframes == 38
    timing = ["req_id", "keyframe", "frame", "media_time", "arrival", "latency", "lateness"]
    assert list(df.columns) == timing + flame.column_names(50) + list(flame.SCALAR_CHANNELS)
    assert isinstance(df["req_id"].dtype, pd.CategoricalDtype)
    assert list(df["req_id"].cat.categories) == ["r1", "r2"]
    for name in ("media_time", "arrival", "latency", "lateness"):
        assert df[name].dtype == np.float64, name
    for name in flame.column_names(50) + list(flame.SCALAR_CHANNELS):
        assert df[name].dtype == np.float32, name
    assert df["keyframe"].tolist() == list(range(38))
    assert df["frame"].tolist() == list(range(25)) + list(range(13))
    np.testing.assert_array_equal(df["jaw_open"], tl.jaw_open)
    np.testing.assert_array_equal(df["jaw_pose_0"], tl.jaw_open)
    np.testing.assert_array_equal(df["eyelid_right"], tl.eyelid_right)
    np.testing.assert_array_equal(df[[f"expression_{i}" for i in range(50)]].to_numpy(), tl.expression)
    np.testing.assert_array_equal(df["latency"], tl.latency)
    np.testing.assert_array_equal(df["lateness"], tl.lateness)
    np.testing.assert_array_equal(df["media_time"], tl.media_time)


def test_message_and_chunk_tables():
    tl = make_run()
    messages = tl.to_pandas(per="message")
    assert list(messages.columns) == ["message", "req_id", "arrival", "keyframes", "end"]
    assert len(messages) == 13 + 7 and messages["keyframes"].sum() == 38
    assert messages["end"].sum() == 2 and messages["end"].dtype == bool
    assert messages["arrival"].dtype == np.float64
    chunks = tl.to_pandas(per="chunk")
    assert list(chunks.columns) == ["chunk", "req_id", "sent_at", "samples"]
    assert len(chunks) == 38 and chunks["samples"].sum() == 24320
    assert chunks.groupby("req_id", observed=True).size().to_dict() == {"r1": 25, "r2": 13}
    with pytest.raises(ValueError, match="unknown per='frame'; accepted: 'keyframe', 'message', 'chunk'"):
        tl.to_pandas(per="frame")


@pytest.mark.parametrize("per", ["keyframe", "message", "chunk"])
def test_parquet_round_trip_is_exact(tmp_path, per):
    tl = make_run()
    tl.add_audio_chunk("r3", 5.0, 640)  # a request without keyframes: an unused category
    df = tl.to_pandas(per=per)
    path = tmp_path / f"{per}.parquet"
    df.to_parquet(path)
    pd.testing.assert_frame_equal(pd.read_parquet(path), df, check_exact=True)


def test_requests_table_round_trips_through_parquet(tmp_path):
    tl = make_run()
    tl.set_request_status("r2", "preempted", at=1.5)
    df = tl.requests
    df.to_parquet(tmp_path / "req.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "req.parquet"), df, check_exact=True)


def test_empty_timeline_tables_have_their_columns():
    tl = Timeline(25)
    df = tl.to_pandas()
    assert len(df) == 0 and "jaw_open" in df.columns and df["arrival"].dtype == np.float64
    assert len(tl.to_pandas(per="message")) == 0 and len(tl.to_pandas(per="chunk")) == 0
    assert len(tl.requests) == 0 and "status" in tl.requests.columns


def test_fast_pacing_lateness_column_is_nan():
    tl = make_run(realtime=False)
    tl.meta["pacing"] = "fast"
    df = tl.to_pandas()
    assert df["lateness"].isna().all() and df["latency"].notna().all()


def test_to_xarray_dims_and_coords():
    pytest.importorskip("xarray")
    tl = make_run()
    tl.meta["pacing"] = "capture"
    da = tl.to_xarray()
    assert da.dims == ("time", "channel") and da.shape == (38, 70)
    assert da.dtype == np.float32
    assert list(da["channel"].values) == flame.column_names(50)
    np.testing.assert_array_equal(da["time"].values, tl.media_time)
    np.testing.assert_array_equal(da.sel(channel="jaw_pose_0").values, tl.jaw_open)
    assert list(da["req_id"].values[[0, -1]]) == ["r1", "r2"]
    assert da.attrs["pacing"] == "capture" and da.attrs["sample_rate"] == 16000


def test_to_xarray_without_xarray_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_xarray(name, *args, **kwargs):
        if name == "xarray" or name.startswith("xarray."):
            raise ImportError("No module named 'xarray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_xarray)
    with pytest.raises(ImportError, match=r"pip install avatar_nb\[xarray\]"):
        make_run().to_xarray()
