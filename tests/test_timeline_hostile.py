"""Hostile Timeline files: every size is known and checked before anything is allocated,
and anything malformed is a ValueError naming the file; saving is atomic.

The reproducers that could exhaust memory or leave a truncated file run in a child
process under ``RLIMIT_AS`` / ``RLIMIT_FSIZE`` (before the checks: a header declaring
width 1e9 loaded and ``to_pandas()`` reached 5.4 GB; a 1.85 MB zip bomb took 1.94 GB)."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import textwrap
import tracemalloc
import wave
import zlib
from pathlib import Path

import numpy as np
import pytest

from avatar_nb import timeline_file
from avatar_nb.timeline import Timeline

from .test_timeline import make_run

GiB = 1 << 30
_ZEROS = bytes(16 << 20)


def run_limited(code: str, *, address_space: int | None = None, file_size: int | None = None) -> dict:
    """Run ``code`` in a child Python under the given limits; the JSON it prints last."""
    prelude = "import resource, signal\n"
    if address_space:
        prelude += f"resource.setrlimit(resource.RLIMIT_AS, ({address_space}, {address_space}))\n"
    if file_size:
        prelude += "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        prelude += f"resource.setrlimit(resource.RLIMIT_FSIZE, ({file_size}, {file_size}))\n"
    done = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and lines, f"child failed ({done.returncode}):\n{done.stdout}\n{done.stderr[-3000:]}"
    return json.loads(lines[-1])


LOAD_CHILD = """
    import json, tracemalloc
    from avatar_nb.timeline import Timeline
    tracemalloc.start()
    try:
        tl = Timeline.load({path!r})
        table = tl.to_pandas()
        outcome = f"loaded {{len(table)}} rows"
    except BaseException as exc:
        outcome = f"{{type(exc).__name__}}: {{exc}}"
    print(json.dumps({{"outcome": outcome, "peak": tracemalloc.get_traced_memory()[1]}}))
"""


# --------------------------------------------------------------------------- writing files


def _npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array(out, array, allow_pickle=True)
    return out.getvalue()


def _write_zip(path: Path, members: dict[str, bytes | tuple[bytes, int]]) -> None:
    """A zip of deflated members; a member given as ``(npy header, n)`` is that header and
    ``n`` times 16 MiB of zeros, written as repeated deflate blocks (a compression bomb)."""
    local, central = bytearray(), bytearray()
    for name, content in members.items():
        comp = zlib.compressobj(9, zlib.DEFLATED, -15)
        if isinstance(content, tuple):
            head, n = content
            first = comp.compress(head) + comp.flush(zlib.Z_FULL_FLUSH)
            block = comp.compress(_ZEROS) + comp.flush(zlib.Z_FULL_FLUSH)
            data = first + block * n + zlib.compressobj(9, zlib.DEFLATED, -15).flush()
            crc = zlib.crc32(head)
            for _ in range(n):
                crc = zlib.crc32(_ZEROS, crc)
            size = len(head) + n * len(_ZEROS)
        else:
            data = comp.compress(content) + comp.flush()
            crc, size = zlib.crc32(content), len(content)
        fname = (name + ".npy").encode()
        offset = len(local)
        fields = struct.pack("<HHHHHIII", 20, 0, 8, 0, 0x21, crc, len(data), size)
        local += b"PK\x03\x04" + fields + struct.pack("<HH", len(fname), 0) + fname + data
        central += (
            b"PK\x01\x02" + struct.pack("<H", 20) + fields
            + struct.pack("<HHHHHII", len(fname), 0, 0, 0, 0, 0, offset) + fname
        )
    end = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, len(members), len(members), len(central), len(local), 0)
    path.write_bytes(bytes(local + central + end))


def _members(tl: Timeline) -> dict[str, np.ndarray]:
    """What :func:`timeline_file.write_record` writes for ``tl``, as arrays."""
    record = tl.snapshot()
    header = {
        "format": 2, "fps": record.fps, "sample_rate": record.sample_rate, "meta": record.meta,
        "errors": list(record.errors), "req_ids": list(record.req_ids), "width": record.width,
        "ended": list(record.ended), "status_log": [list(e) for e in record.status_log],
        "anomalies": [list(e) for e in record.anomalies], "playback": [list(e) for e in record.playback],
        "audio_set": record.audio_set,
    }
    arrays = {
        "header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
        "keyframes": np.asarray(record.keyframes),
        **{name: np.asarray(getattr(record, name)) for name in (
            "message_arrival", "message_keyframes", "message_req", "message_end",
            "chunk_sent_at", "chunk_samples", "chunk_req",
        )},
    }
    if record.audio is not None:
        arrays["audio"] = np.asarray(record.audio)
    return arrays


def _header(arrays: dict[str, np.ndarray]) -> dict:
    return json.loads(bytes(arrays["header"]))


def _with_header(arrays: dict[str, np.ndarray], header: dict | bytes) -> dict[str, np.ndarray]:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return {**arrays, "header": np.frombuffer(raw, dtype=np.uint8)}


def _save(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    np.savez_compressed(path, **arrays)
    return path


@pytest.fixture(scope="module")
def good() -> dict[str, np.ndarray]:
    return _members(make_run())


# --------------------------------------------------------------------------- reproducers (children)


def test_a_header_declaring_a_huge_width_is_refused(tmp_path, good):
    path = _save(tmp_path / "wide.npz", _with_header(
        {**good, "keyframes": np.zeros((0, 20), np.float32), "message_keyframes": np.zeros(20, np.int32)},
        {**_header(good), "width": 1_000_000_000},
    ))
    result = run_limited(LOAD_CHILD.format(path=str(path)), address_space=2 * GiB)
    assert result["outcome"].startswith(f"ValueError: {path} is not a valid avatar_nb timeline file")
    assert "width 1000000000 is not an int from 20 to 4096" in result["outcome"]
    assert result["peak"] < 4 << 20


def test_a_zip_bomb_is_refused_before_it_is_inflated(tmp_path, good):
    """1.2 GiB of zeros as the audio member: 1.2 MB on disk, refused from its declared size."""
    members = {name: _npy(a) for name, a in good.items() if name != "audio"}
    n_blocks = 77  # 77 x 16 MiB
    head = _zeros_header("<i2", n_blocks * len(_ZEROS) // 2)
    path = tmp_path / "bomb.npz"
    _write_zip(path, {**members, "audio": (head, n_blocks)})
    assert path.stat().st_size < 2 << 20
    result = run_limited(LOAD_CHILD.format(path=str(path)), address_space=2 * GiB)
    assert result["outcome"] == (
        f"ValueError: {path} declares {sum(len(m) for m in members.values()) + len(head) + n_blocks * len(_ZEROS)} "
        f"bytes of arrays, more than the {1 << 30} read (pass a larger max_bytes to read it)"
    )
    assert result["peak"] < 4 << 20
    # a bomb under the bound is read when its sizes are consistent: it is an ordinary large file
    small = tmp_path / "small_bomb.npz"
    _write_zip(small, {**members, "audio": (_zeros_header("<i2", 4 * len(_ZEROS) // 2), 4)})
    assert Timeline.load(small).audio.shape == (4 * len(_ZEROS) // 2,)
    tracemalloc.start()
    with pytest.raises(ValueError, match=r"more than the 1048576 read"):
        timeline_file.load(Timeline, small, max_bytes=1 << 20)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20  # refused before inflating any of its 64 MiB


def _zeros_header(dtype: str, n: int) -> bytes:
    """The .npy header of ``n`` values of ``dtype`` (their data: zeros from :func:`_write_zip`)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": (n,)})
    return buf.getvalue()


def test_millions_of_empty_messages_are_refused_by_what_they_would_take_in_memory(tmp_path, good):
    """16.7 million zero messages: 272 MiB of arrays (under the 1 GiB bound), 1.1 MB on
    disk, but about 1.9 GB once the timeline holds them as lists."""
    n = len(_ZEROS)  # 16 Mi messages
    members = {name: _npy(good[name]) for name in ("header", "chunk_sent_at", "chunk_samples", "chunk_req")}
    members["keyframes"] = _npy(np.zeros((0, 70), np.float32))
    bombs = {
        "message_arrival": ("<f8", 8), "message_keyframes": ("<i4", 4), "message_req": ("<i4", 4),
        "message_end": ("|b1", 1),
    }
    path = tmp_path / "messages.npz"
    _write_zip(path, {**members, **{k: (_zeros_header(d, n), size) for k, (d, size) in bombs.items()}})
    assert path.stat().st_size < 2 << 20
    result = run_limited(LOAD_CHILD.format(path=str(path)), address_space=2 * GiB)
    assert result["outcome"].startswith(f"ValueError: {path} would take about ")
    assert f"({n} messages, 38 chunks), more than the {1 << 30} read" in result["outcome"]
    assert result["peak"] < 4 << 20


def test_an_npy_header_that_disagrees_with_the_zip_is_refused(tmp_path, good):
    """A member whose .npy header declares a shape other than the zip's declared size."""
    members = {name: _npy(a) for name, a in good.items()}
    audio = _npy(good["audio"])
    members["audio"] = audio[:-2]  # one sample short of what its header declares
    _write_zip(tmp_path / "short.npz", members)
    with pytest.raises(ValueError, match=r"short\.npz is not a valid avatar_nb timeline file: member 'audio' declares shape \(24000,\)"):
        Timeline.load(tmp_path / "short.npz")


def test_a_full_disk_leaves_the_old_file_and_no_partial_one(tmp_path):
    old = make_run()
    path = old.save(tmp_path / "run.npz")
    before = path.read_bytes()
    result = run_limited(
        f"""
        import json, os, numpy as np
        from avatar_nb.timeline import Timeline
        tl = Timeline(25, sample_rate=16000, audio=np.random.default_rng(1).integers(-9999, 9999, 400000).astype(np.int16))
        try:
            tl.save({str(path)!r})
            outcome = "saved"
        except OSError as exc:
            outcome = f"{{type(exc).__name__}}: {{exc.errno}}"
        try:
            Timeline(25).save({str(tmp_path / "other.npz")!r})
            other = "saved"
        except OSError as exc:
            other = type(exc).__name__
        print(json.dumps({{"outcome": outcome, "files": sorted(os.listdir({str(tmp_path)!r})), "other": other}}))
        """,
        file_size=len(before) + 4096,
    )
    assert result["outcome"].startswith("OSError") or result["outcome"].startswith("File"), result
    assert path.read_bytes() == before  # the old file is untouched
    assert result["files"] == ["other.npz", "run.npz"]  # no temporary or truncated file left
    assert Timeline.load(path).summary() == old.summary()


# --------------------------------------------------------------------------- malformed files, in process


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"fps": "25"}, "fps '25' is not a positive number"),
        ({"fps": None}, "fps None is not a positive number"),
        ({"sample_rate": 16000.5}, "sample_rate 16000.5 is not a positive int"),
        ({"meta": []}, "meta is not an object"),
        ({"errors": "oops"}, "'errors' is not a list of strings"),
        ({"req_ids": {"r1": 0}}, "'req_ids' is not a list of strings"),
        ({"req_ids": ["r1", "r1"]}, "req_ids repeat"),
        ({"width": "70"}, "width '70' is not an int from 20 to 4096"),
        ({"width": 1e9}, "width 1000000000.0 is not an int"),
        ({"ended": ["r1"]}, "'ended' is not a list of indices into its 2 req_ids"),
        ({"ended": [2]}, "'ended' is not a list of indices"),
        ({"status_log": [["r1", "complete"]]}, "'status_log' entry 0 is"),
        ({"status_log": {"r1": 1}}, "'status_log' is not a list"),
        ({"anomalies": [["r1", "k", 3, 0.1]]}, "'anomalies' entry 0"),
        ({"playback": [[1, 2, 3, 4, 5]]}, "'playback' entry 0"),
        ({"audio_set": "yes"}, "audio_set 'yes' is not true or false"),
        ({"width": 71}, "declares width 71 but its keyframes have 70 columns"),
    ],
)
def test_malformed_headers_are_value_errors_naming_the_file(tmp_path, good, change, message):
    path = _save(tmp_path / "bad.npz", _with_header(good, {**_header(good), **change}))
    with pytest.raises(ValueError) as info:
        Timeline.load(path)
    text = str(info.value)
    assert str(path) in text and message in text, text


@pytest.mark.parametrize(
    ("drop", "message"),
    [("fps", "has no 'fps'"), ("meta", "has no 'meta'"), ("req_ids", "has no 'req_ids'"), ("width", "has no 'width'")],
)
def test_missing_header_fields(tmp_path, good, drop, message):
    header = {k: v for k, v in _header(good).items() if k != drop}
    path = _save(tmp_path / "bad.npz", _with_header(good, header))
    with pytest.raises(ValueError, match=message):
        Timeline.load(path)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff\xfe", "its header is not JSON"),
        (b"[1, 2]", "its header is not a JSON object"),
        (b"[" * 100000 + b"]" * 100000, "its header is not JSON"),
        (b'{"format": "2"}', "timeline format '2'; this version reads 1, 2"),
        (b'{"format": true}', "timeline format True"),
    ],
)
def test_headers_that_are_not_json_objects(tmp_path, good, raw, message):
    path = _save(tmp_path / "bad.npz", _with_header(good, raw))
    with pytest.raises(ValueError, match=message):
        Timeline.load(path)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"keyframes": np.zeros(70, np.float32)}, "member 'keyframes' is (70,) of <f4; a 2-D array of <f4 is read"),
        ({"keyframes": np.zeros((38, 70), np.float64)}, "member 'keyframes' is (38, 70) of <f8"),
        ({"message_arrival": np.zeros(19)}, "differ in length"),
        ({"chunk_req": np.zeros(37, np.int32)}, "differ in length"),
        ({"message_req": np.full(20, 5, np.int32)}, "message_req holds an index outside its 2 req_ids"),
        ({"chunk_req": np.full(38, -1, np.int32)}, "chunk_req holds an index outside"),
        ({"message_keyframes": np.full(20, 3, np.int32)}, "its messages carry 60 keyframes but it holds 38"),
        ({"message_keyframes": np.array([-1] + [2] * 19, np.int32)}, "negative number of keyframes"),
        ({"chunk_samples": np.full(38, -640, np.int64)}, "negative number of samples"),
        ({"audio": np.zeros((2, 100), np.int16)}, "member 'audio' is (2, 100) of <i2; a 1-D array of <i2"),
        ({"audio": np.zeros(100, np.float32)}, "member 'audio' is (100,) of <f4"),
        ({"audio": np.array([{"x": 1}], dtype=object)}, "member 'audio' has dtype '|O'; only plain numbers"),
        ({"header": np.zeros((2, 2), np.uint8)}, "its header is (2, 2) of |u1"),
        ({"extra/x": np.zeros(1)}, "is not an .npy array"),
    ],
)
def test_wrong_shapes_and_types_are_refused_at_load(tmp_path, good, arrays, message):
    path = tmp_path / "bad.npz"
    members = {**good, **arrays}
    if "extra/x" in arrays:
        _write_zip(path, {k: _npy(v) for k, v in members.items()})
    else:
        _save(path, members)
    with pytest.raises(ValueError) as info:
        Timeline.load(path)
    text = str(info.value)
    assert str(path) in text and message in text, text


@pytest.mark.parametrize("missing", ["keyframes", "message_end", "chunk_samples"])
def test_missing_members_are_named(tmp_path, good, missing):
    path = _save(tmp_path / "bad.npz", {k: v for k, v in good.items() if k != missing})
    with pytest.raises(ValueError, match=f"it has no {missing} member"):
        Timeline.load(path)


def test_big_endian_arrays_are_read_in_native_order(tmp_path, good):
    arrays = {k: (v if k == "header" else v.astype(v.dtype.newbyteorder(">"))) for k, v in good.items()}
    back = Timeline.load(_save(tmp_path / "be.npz", arrays))
    tl = make_run()
    np.testing.assert_array_equal(back.keyframes, tl.keyframes)
    assert back.summary() == tl.summary() and back.keyframes.dtype == np.float32


# --------------------------------------------------------------------------- files that are not timelines


def test_a_wav_is_not_a_timeline_file(tmp_path):
    path = tmp_path / "notes.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(bytes(3200))
    with pytest.raises(ValueError) as info:
        Timeline.load(path)
    assert str(info.value) == f"{path} is not an avatar_nb timeline file: it is not an .npz (zip) archive"
    assert "pickle" not in str(info.value)
    text = tmp_path / "text.wav"  # a text file with a .wav name
    text.write_text("notes: call Bob\n")
    with pytest.raises(ValueError) as info:
        Timeline.load(text)
    assert str(info.value) == f"{text} is not an avatar_nb timeline file: it is not an .npz (zip) archive"
    npy = tmp_path / "a.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(ValueError, match="it is not an .npz"):
        Timeline.load(npy)
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.npz is not an avatar_nb timeline file"):
        Timeline.load(tmp_path / "empty.npz")
    with pytest.raises(FileNotFoundError):
        Timeline.load(tmp_path / "missing.npz")


def test_save_replaces_atomically_and_leaves_no_temporary(tmp_path, monkeypatch):
    tl = make_run()
    path = tl.save(tmp_path / "run.npz")
    before = path.read_bytes()

    def fail_midway(fh, **arrays):
        fh.write(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", fail_midway)
    with pytest.raises(OSError, match="No space left"):
        tl.save(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["run.npz"]
    monkeypatch.undo()
    mask = os.umask(0o022)
    os.umask(mask)
    assert (path.stat().st_mode & 0o777) == 0o666 & ~mask  # as open() would have made it
