"""Property tests: every function of the compiled core (_pcm, _wire, _flame) against its pure
numpy/protobuf twin in _reference, and the decoders' accept/reject against protobuf."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from avatar_nb import _flame, _pcm, _reference as ref, _wire
from avatar_nb.proto import message_pb2 as pb

from .helpers import varint

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
texts = st.text(max_size=40)


# ----------------------------------------------------------------------------- PCM


def sample_arrays():
    dtypes = st.sampled_from([np.float32, np.float64, np.int16, np.int32, np.uint8])

    def for_dtype(dtype):
        if np.issubdtype(dtype, np.floating):
            elements = st.floats(-1.5, 1.5, width=32 if dtype == np.float32 else 64)
        else:
            elements = None
        shapes = st.one_of(
            st.tuples(st.integers(0, 300)),
            st.tuples(st.integers(0, 120), st.integers(1, 6)),
        )
        return hnp.arrays(dtype, shapes, elements=elements)

    return dtypes.flatmap(for_dtype)


@SETTINGS
@given(sample_arrays())
def test_to_s16le_matches_reference(x):
    assert _pcm.to_s16le(x) == ref.to_s16le(x)


@SETTINGS
@given(sample_arrays(), st.data())
def test_to_s16le_on_strided_views(x, data):
    assume(x.shape[0] > 1)
    view = x[:: data.draw(st.integers(1, 3))]
    if view.ndim == 2:
        view = view[:, ::-1]
    assert _pcm.to_s16le(view) == ref.to_s16le(np.ascontiguousarray(view))


@SETTINGS
@given(hnp.arrays(np.float32, st.integers(1, 200), elements=st.floats(-1, 1, width=32)), st.integers(0, 199))
def test_non_finite_is_named_by_index(x, where):
    where = where % x.shape[0]
    x = x.copy()
    x[where] = np.nan
    with pytest.raises(ValueError, match=rf"^sample {where} is nan; NaN and infinity are not audio"):
        _pcm.to_s16le(x)


@SETTINGS
@given(hnp.arrays(np.int16, st.integers(0, 500)))
def test_s16le_round_trip_is_exact(ints):
    pcm = ints.astype("<i2").tobytes()
    samples = _pcm.from_s16le(pcm)
    np.testing.assert_array_equal(samples, ref.from_s16le(pcm))
    assert _pcm.to_s16le(samples) == pcm


@SETTINGS
@given(
    st.one_of(
        hnp.arrays(np.int16, st.integers(1, 3000)),
        hnp.arrays(np.float32, st.integers(1, 3000), elements=st.floats(-1, 1, width=32)),
    ),
    st.integers(1, 400),
)
def test_peak_envelope_matches_reference(x, bins):
    mins, maxs = _pcm.peak_envelope(x, bins)
    rmins, rmaxs = ref.peak_envelope(x, bins)
    np.testing.assert_array_equal(mins, rmins)
    np.testing.assert_array_equal(maxs, rmaxs)


@SETTINGS
@given(
    hnp.arrays(np.int16, st.integers(0, 5000)),
    st.sampled_from([8000, 16000, 22050, 44100, 48000]),
    st.sampled_from([25.0, 30.0, 29.97, 24.0, 60.0]),
)
def test_frame_features_match_reference(ints, rate, fps):
    pcm = ints.astype("<i2").tobytes()
    got = _pcm.frame_features(pcm, rate, fps)
    want = ref.frame_features(pcm, rate, fps)
    assert _pcm.frame_count(ints.shape[0], rate, fps) == want["rms"].shape[0]
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=2e-5, atol=2e-6, err_msg=key)
    # the same features from int16 samples and from their float values
    floats = _pcm.frame_features(ints.astype(np.float32) / 32768.0, rate, fps)
    for key in want:
        np.testing.assert_allclose(floats[key], want[key], rtol=2e-5, atol=2e-6, err_msg=key)


# ----------------------------------------------------------------------------- encoding


@SETTINGS
@given(st.binary(max_size=3000).map(lambda b: b[: len(b) // 2 * 2]), texts, st.integers(1, 700), st.booleans())
def test_encode_audio_messages_is_byte_identical_to_protobuf(pcm, req_id, half_chunk, end):
    assert _wire.encode_audio_messages(pcm, req_id, half_chunk * 2, end=end) == ref.encode_audio_messages(
        pcm, req_id, half_chunk * 2, end=end
    )


def keyframe_arrays(max_frames=6):
    return st.tuples(st.integers(0, max_frames), st.integers(0, 60)).flatmap(
        lambda s: hnp.arrays(np.float32, (s[0], 20 + s[1]), elements=st.floats(width=32, allow_nan=False))
    )


@SETTINGS
@given(keyframe_arrays(), texts, texts, st.booleans(), texts)
def test_encode_animation_is_byte_identical_to_protobuf(kf, cid, rid, end, aid):
    assert _flame.encode_animation(kf) == ref.encode_animation(kf)
    assert _wire.encode_animation_message(kf, connection_id=cid, req_id=rid, end=end, avatar_id=aid) == (
        ref.encode_animation_message(kf, connection_id=cid, req_id=rid, end=end, avatar_id=aid)
    )


# ----------------------------------------------------------------------------- decoding


def _messages():
    """Any Message the protocol defines, built with the protobuf classes."""

    def configure(rate, bitrate, fmt, egress):
        m = pb.Message(type=1)
        c = m.client_configure_session
        c.sample_rate, c.bitrate, c.audio_format, c.egress_type = rate, bitrate, fmt, egress
        return m

    def confirm(cid, caps):
        m = pb.Message(type=2)
        m.server_confirm_session.connection_id = cid
        m.server_confirm_session.capabilities.extend(caps)
        return m

    def audio(rid, end, data):
        m = pb.Message(type=3)
        m.client_audio_input.req_id, m.client_audio_input.end, m.client_audio_input.audio = rid, end, data
        return m

    def error(cid, rid, code, text):
        m = pb.Message(type=4)
        e = m.server_error
        e.connection_id, e.req_id, e.code, e.message = cid, rid, code, text
        return m

    def animation(kf, cid, rid, end, aid):
        return pb.Message.FromString(
            ref.encode_animation_message(kf, connection_id=cid, req_id=rid, end=end, avatar_id=aid)
        )

    def control(kind, rid):
        m = pb.Message(type={"client_interrupt": 7, "client_pause": 8, "client_resume": 9}[kind])
        getattr(m, kind).req_id = rid
        return m

    def playback(cid, rid, state, played, reason):
        m = pb.Message(type=10)
        p = m.server_playback_state
        p.connection_id, p.req_id, p.state, p.played_ms, p.reason = cid, rid, state, played, reason
        return m

    i32 = st.integers(-(2**31), 2**31 - 1)
    return st.one_of(
        st.builds(configure, i32, i32, st.integers(0, 1), st.integers(0, 2)),
        st.builds(confirm, texts, st.lists(texts, max_size=4)),
        st.builds(audio, texts, st.booleans(), st.binary(max_size=300)),
        st.builds(error, texts, texts, i32, texts),
        st.builds(animation, keyframe_arrays(3), texts, texts, st.booleans(), texts),
        st.builds(control, st.sampled_from(["client_interrupt", "client_pause", "client_resume"]), texts),
        st.builds(playback, texts, texts, st.integers(0, 4), st.integers(-(2**63), 2**63 - 1), texts),
        st.builds(lambda t: pb.Message(type=t), st.integers(0, 10)),
    )


@SETTINGS
@given(_messages())
def test_decode_message_matches_protobuf(message):
    data = message.SerializeToString()
    got = _wire.decode_message(data)
    want = ref.decode_message(data)
    for key, value in want.items():
        assert getattr(got, key) == value, key
    if want["data_field"] == 6:
        np.testing.assert_array_equal(got.keyframes, ref.decode_animation(want["animation"]))
        assert got.animation_error is None


@SETTINGS
@given(st.lists(_messages(), max_size=8))
def test_decode_animation_batch_matches_protobuf(messages):
    data = [m.SerializeToString() for m in messages]
    widths = {
        m.server_response_animation.animation and ref.decode_animation(m.server_response_animation.animation).shape[1]
        for m in messages
        if m.WhichOneof("data") == "server_response_animation"
    } - {0, b""}
    if len(widths) > 1:
        with pytest.raises(ValueError, match="expression coefficients"):
            _flame.decode_animation_batch(data)
    else:
        got = _flame.decode_animation_batch(data)
        want = ref.decode_animation_batch(data)
        assert got.shape[0] == want.shape[0]
        if want.shape[0]:
            np.testing.assert_array_equal(got, want)
        # bytearray and memoryview inputs decode the same
        np.testing.assert_array_equal(_flame.decode_animation_batch([bytearray(d) for d in data]), got)
        np.testing.assert_array_equal(_flame.decode_animation_batch(memoryview(d) for d in data), got)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    def varint(n):
        out = bytearray()
        while True:
            b, n = n & 0x7F, n >> 7
            out.append(b | (0x80 if n else 0))
            if not n:
                return bytes(out)

    key = varint(number << 3 | wire)
    if wire == 2:
        return key + varint(len(payload)) + payload
    return key + payload


@SETTINGS
@given(keyframe_arrays(4), st.data())
def test_unpacked_floats_split_fields_and_unknown_fields_decode_like_protobuf(kf, data):
    """Hand-written encodings protobuf accepts: unpacked floats (wire type 5), a packed
    field split in two, unknown fields of every wire type anywhere in a keyframe."""
    layout = [(1, 0, 3), (2, 3, 3), (3, 6, 3), (4, 9, 3), (5, 12, 6), (6, 18, 2), (7, 20, kf.shape[1] - 20)]
    payload = b""
    for row in kf:
        parts = []
        for number, start, count in layout:
            values = row[start : start + count]
            style = data.draw(st.sampled_from(["packed", "unpacked", "split"]))
            if count == 0:
                continue
            if style == "packed":
                parts.append(_field(number, 2, values.astype("<f4").tobytes()))
            elif style == "unpacked":
                parts.extend(_field(number, 5, struct.pack("<f", v)) for v in values)
            else:
                cut = data.draw(st.integers(0, count))
                parts.append(_field(number, 2, values[:cut].astype("<f4").tobytes()))
                parts.append(_field(number, 2, values[cut:].astype("<f4").tobytes()))
        unknown = [
            _field(99, 0, b"\x96\x01"),
            _field(100, 1, b"\x00" * 8),
            _field(101, 2, b"abc"),
            _field(102, 5, b"\x00" * 4),
        ]
        for extra in data.draw(st.lists(st.sampled_from(unknown), max_size=3)):
            parts.insert(data.draw(st.integers(0, len(parts))), extra)
        flame = b"".join(parts)
        payload += _field(1, 2, flame)
    payload += data.draw(st.sampled_from([b"", _field(50, 2, b"tail")]))
    np.testing.assert_array_equal(_flame.decode_animation(payload), ref.decode_animation(payload))
    if kf.shape[0]:
        np.testing.assert_array_equal(_flame.decode_animation(payload), kf)


# ----------------------------------------------------------------------------- accept/reject, as protobuf


def _tag(field: int, wire: int, pad: int) -> bytes:
    raw = bytearray(varint(field << 3 | wire))
    for _ in range(pad):  # redundant continuation bytes: a 6-byte tag is overlong
        raw[-1] |= 0x80
        raw.append(0)
    return bytes(raw)


_field_numbers = st.one_of(st.integers(1, 11), st.sampled_from([0, 12, 16, 2047, 2**29 - 1, 2**29, 2**32 >> 3]))
_pads = st.one_of(st.just(0), st.just(0), st.just(0), st.integers(1, 5))
_strings = st.one_of(st.text(max_size=6).map(str.encode), st.binary(max_size=6))  # binary: often not UTF-8


def _wire_fields(children):
    """One field of any wire type; LEN fields hold nested fields, strings or bytes; groups
    are matched, mismatched or left open; a few tags are stray end-groups or invalid."""
    scalar = st.one_of(
        st.builds(lambda f, p, v: _tag(f, 0, p) + varint(v), _field_numbers, _pads, st.integers(0, 2**64 - 1)),
        st.builds(lambda f, p, v: _tag(f, 5, p) + v, _field_numbers, _pads, st.binary(min_size=4, max_size=4)),
        st.builds(lambda f, p, v: _tag(f, 1, p) + v, _field_numbers, _pads, st.binary(min_size=8, max_size=8)),
    )
    length_delimited = st.builds(
        lambda f, p, payload: _tag(f, 2, p) + varint(len(payload)) + payload,
        _field_numbers, _pads, st.one_of(_strings, children),
    )
    groups = st.builds(
        lambda f, inner, close: _tag(f, 3, 0) + inner + (_tag(f + close, 4, 0) if close >= 0 else b""),
        st.integers(1, 40), children, st.sampled_from([0, 0, 0, 0, 1, -1]),
    )
    odd = st.builds(lambda f, w: _tag(f, w, 0), st.integers(1, 20), st.sampled_from([4, 6, 7]))
    return st.one_of(scalar, length_delimited, groups, odd)


def _field_runs(children):
    """Up to five fields in a row; ``children`` are the runs nested inside them."""
    return st.lists(_wire_fields(children), max_size=5).map(b"".join)


_wire_messages = st.recursive(st.just(b""), _field_runs, max_leaves=30)


def _outcome(fn, data):
    try:
        return True, fn(data)
    except Exception as exc:  # protobuf's DecodeError; ours must be ValueError (checked below)
        return False, exc


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_wire_messages)
def test_decoders_accept_and_reject_exactly_what_protobuf_does(data):
    """Overlong tags, groups (skipped when well formed), stray end-groups, invalid UTF-8 in
    any string (egress configs and their map entries included): the same verdict as protobuf."""
    pb_ok, want = _outcome(ref.decode_message, data)
    ok, got = _outcome(_wire.decode_message, data)
    if not ok:
        assert isinstance(got, ValueError), got
    assert ok == pb_ok, (data, got if not ok else want)
    batch_ok, batch = _outcome(lambda d: _flame.decode_animation_batch([d]), data)
    if not batch_ok:
        assert isinstance(batch, ValueError), batch
    assert batch_ok == _outcome(lambda d: ref.decode_animation_batch([d]), data)[0]
    if ok:
        for key, value in want.items():
            assert getattr(got, key) == value, key
    payload_ok, kf = _outcome(ref.decode_animation, data)
    ours_ok, ours = _outcome(_flame.decode_animation, data)
    if not ours_ok:
        assert isinstance(ours, ValueError), ours
    assert ours_ok == payload_ok, (data, ours if not ours_ok else kf)
    if payload_ok:
        np.testing.assert_array_equal(ours, kf)


@SETTINGS
@given(st.sampled_from(["url", "api_key", "room_name", "key", "value", "channel_name", "token"]),
       st.binary(min_size=1, max_size=8))
def test_egress_strings_are_validated_like_protobuf(where, raw):
    m = pb.Message(type=1)
    c = m.client_configure_session
    if where in ("key", "value"):
        c.livekit_egress.extra_attributes["k\u00e9y"] = "v\u00e4lue"
        marker = "k\u00e9y" if where == "key" else "v\u00e4lue"
    elif where in ("channel_name", "token"):
        setattr(c.agora_egress, where, "m\u00e4rker")
        marker = "m\u00e4rker"
    else:
        setattr(c.livekit_egress, where, "m\u00e4rker")
        marker = "m\u00e4rker"
    encoded = marker.encode()
    data = m.SerializeToString().replace(varint(len(encoded)) + encoded, varint(len(raw)) + raw)
    pb_ok, _ = _outcome(pb.Message.FromString, data)
    ok, got = _outcome(_wire.decode_message, data)
    assert ok == pb_ok, (data, got)
    assert _outcome(lambda d: _flame.decode_animation_batch([d]), data)[0] == pb_ok
