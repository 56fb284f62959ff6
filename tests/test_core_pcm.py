"""The compiled core's contracts, audio (avatar_nb._pcm): accepted inputs and errors that say what is accepted."""

from __future__ import annotations

import numpy as np
import pytest

from avatar_nb import _pcm


def test_to_s16le_values():
    x = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 2.0, -3.0, 1 / 65536, -1 / 65536], dtype=np.float32)
    got = np.frombuffer(_pcm.to_s16le(x), dtype="<i2")
    assert got.tolist() == [0, 16384, -16384, 32767, -32768, 32767, -32768, 1, -1]
    assert np.frombuffer(_pcm.to_s16le(np.array([-32768, 5, 32767], np.int16)), "<i2").tolist() == [-32768, 5, 32767]
    assert np.frombuffer(_pcm.to_s16le(np.array([-(2**31), 65536 * 3 + 5], np.int32)), "<i2").tolist() == [-32768, 3]
    assert np.frombuffer(_pcm.to_s16le(np.array([0, 128, 255], np.uint8)), "<i2").tolist() == [-32768, 0, 32512]


def test_to_s16le_downmixes_channels():
    stereo = np.array([[0.5, -0.5], [1.0, 0.0], [0.25, 0.25]], dtype=np.float64)
    assert np.frombuffer(_pcm.to_s16le(stereo), "<i2").tolist() == [0, 16384, 8192]
    ints = np.array([[100, 101], [-3, 0]], dtype=np.int16)
    assert np.frombuffer(_pcm.to_s16le(ints), "<i2").tolist() == [100, -2]  # floor of the mean


def test_to_s16le_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"sample 1 \(channel 1\) is inf; NaN and infinity are not audio"):
        _pcm.to_s16le(np.array([[0.0, 0.0], [0.0, np.inf]]))
    with pytest.raises(ValueError, match=r"sample 2 is 1.5, outside \[-1, 1\]; pass clip=True"):
        _pcm.to_s16le(np.array([0.0, 0.1, 1.5], np.float32), clip=False)
    with pytest.raises(TypeError, match=r"unsupported sample dtype complex64; accepted: float32 or float64 in \[-1, 1\], int16"):
        _pcm.to_s16le(np.zeros(3, np.complex64))
    with pytest.raises(TypeError, match="unsupported sample dtype int64"):
        _pcm.to_s16le([1, 2, 3])
    with pytest.raises(TypeError, match="takes a numpy array of samples, got bytes"):
        _pcm.to_s16le(b"\x00\x00")
    with pytest.raises(ValueError, match=r"1-D \(mono\) or 2-D \(frames, channels\), got shape \(2, 2, 2\)"):
        _pcm.to_s16le(np.zeros((2, 2, 2), np.float32))
    with pytest.raises(ValueError, match="no channels"):
        _pcm.to_s16le(np.zeros((4, 0), np.float32))
    assert _pcm.to_s16le(np.zeros(0, np.float32)) == b""


def test_to_s16le_big_endian_input():
    x = np.array([1000, -2], dtype=">i2")
    assert _pcm.to_s16le(x) == np.array([1000, -2], "<i2").tobytes()


def test_from_s16le():
    assert _pcm.from_s16le(b"\x00\x80\xff\x7f").tolist() == [-1.0, 32767 / 32768]
    assert _pcm.from_s16le(memoryview(b"")).shape == (0,)
    with pytest.raises(ValueError, match="even number of bytes, got 3"):
        _pcm.from_s16le(b"abc")
    with pytest.raises(TypeError, match="bytes-like"):
        _pcm.from_s16le("text")


def test_peak_envelope_and_features_inputs():
    mins, maxs = _pcm.peak_envelope(np.array([0, 16384, -32768, 5], np.int16), 2)
    assert mins.tolist() == [0.0, -1.0] and maxs.tolist() == [0.5, 5 / 32768]
    assert [a.shape for a in _pcm.peak_envelope(np.zeros(3, np.float32), 10)] == [(3,), (3,)]
    with pytest.raises(ValueError, match="n_bins must be positive, got 0"):
        _pcm.peak_envelope(np.zeros(3), 0)
    with pytest.raises(TypeError, match="unsupported sample dtype int64"):
        _pcm.peak_envelope(np.zeros(3, np.int64), 2)
    f = _pcm.frame_features(np.ones(1000, np.float32) * 0.5, 16000, 25)
    assert f["rms"].tolist() == [0.5, 0.5] and f["zcr"].tolist() == [0.0, 0.0]
    assert _pcm.frame_count(641, 16000, 25) == 2 and _pcm.frame_count(640, 16000, 25) == 1
    with pytest.raises(ValueError, match="fps must be a positive number"):
        _pcm.frame_features(b"\x00\x00", 16000, 0)
    with pytest.raises(ValueError, match="even number of bytes"):
        _pcm.frame_features(b"\x00", 16000, 25)


def test_to_s16le_names_what_it_was_given():
    with pytest.raises(TypeError, match=r"takes a numpy array \(or a sequence\) of samples, got NoneType; accepted dtypes: float32"):
        _pcm.to_s16le(None)
    with pytest.raises(TypeError, match="got dict"):
        _pcm.to_s16le({"a": 1})
    with pytest.raises(ValueError, match="got a single float value"):
        _pcm.to_s16le(0.5)
    with pytest.raises(TypeError, match="unsupported sample dtype bool"):
        _pcm.to_s16le(np.zeros(3, bool))
