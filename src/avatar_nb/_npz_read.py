"""Reading an ``.npz`` that may be hostile: every size known before anything is allocated.

``numpy.load`` decompresses a member as soon as it is asked for, whatever its size, and
says "allow_pickle" of a file that is not an archive at all. :func:`open_npz` instead
reads the zip's central directory (each member's declared uncompressed size) and each
``.npy`` header (dtype, shape) without decompressing any data, checks that every
member holds exactly what its header says, that the dtypes are plain numbers (no
objects, no structured dtypes) and that the declared sizes together stay under a
caller's bound; :meth:`NpzArchive.read` then reads one member, whose size is known.
zipfile never inflates a member beyond its declared size, so the bound holds for
compression bombs too. Every problem is a ``ValueError`` naming the file.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
from numpy.lib import format as npy_format

__all__ = ["NpzArchive", "NpzMember", "open_npz"]

_MAX_MEMBERS = 64
_MAX_NPY_HEADER = 10_000  # numpy's own default bound on an .npy header
_NUMBER_KINDS = "biuf"


@dataclass(frozen=True)
class NpzMember:
    """One array of the archive as its headers declare it: nothing read yet."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    nbytes: int
    info: zipfile.ZipInfo


class NpzArchive:
    """An opened ``.npz`` whose members' sizes and types are known; use as a context manager."""

    def __init__(self, path: Path, zf: zipfile.ZipFile, members: dict[str, NpzMember], what: str) -> None:
        self.path = path
        self.what = what
        self.members = members
        self._zf = zf

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._zf.close()

    def error(self, text: str) -> ValueError:
        return ValueError(f"{self.path} is not a valid {self.what}: {text}")

    def read(self, name: str) -> np.ndarray:
        """The array ``name`` (its size was checked when the archive was opened)."""
        member = self.members[name]
        try:
            with self._zf.open(member.info) as fh:
                array = npy_format.read_array(fh, allow_pickle=False, max_header_size=_MAX_NPY_HEADER)
                if fh.read(1):
                    raise self.error(f"member {name!r} holds more than its header declares")
        except ValueError:
            raise
        except (OSError, EOFError, zipfile.BadZipFile, NotImplementedError, RuntimeError) as exc:
            raise self.error(f"member {name!r} cannot be read ({type(exc).__name__}: {exc})") from None
        if array.shape != member.shape or array.dtype != member.dtype:
            raise self.error(f"member {name!r} does not hold what its header declares")
        return array


def _member_header(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, what: str) -> NpzMember:
    name = info.filename[: -len(".npy")]
    bad = f"{path} is not a valid {what}: member {name!r}"
    try:
        with zf.open(info) as fh:
            version = npy_format.read_magic(fh)
            if version == (1, 0):
                shape, _fortran, dtype = npy_format.read_array_header_1_0(fh, max_header_size=_MAX_NPY_HEADER)
            elif version == (2, 0):
                shape, _fortran, dtype = npy_format.read_array_header_2_0(fh, max_header_size=_MAX_NPY_HEADER)
            else:
                raise ValueError(f"has .npy format version {version}; 1.0 and 2.0 are read")
            offset = fh.tell()
    except ValueError as exc:
        raise ValueError(f"{bad} has no valid .npy header ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile, NotImplementedError, RuntimeError) as exc:
        raise ValueError(f"{bad} cannot be read ({type(exc).__name__}: {exc})") from None
    dtype = np.dtype(dtype)
    if dtype.hasobject or dtype.names is not None or dtype.subdtype is not None or dtype.kind not in _NUMBER_KINDS:
        raise ValueError(f"{bad} has dtype {dtype.str!r}; only plain numbers are read")
    if not all(isinstance(n, int) and n >= 0 for n in shape):
        raise ValueError(f"{bad} has shape {shape!r}")
    nbytes = math.prod(shape) * dtype.itemsize
    if offset + nbytes != info.file_size:
        raise ValueError(
            f"{bad} declares shape {tuple(shape)} of {dtype.str} ({nbytes} bytes) but the archive "
            f"declares {info.file_size - offset} bytes of data"
        )
    return NpzMember(name, tuple(shape), dtype, nbytes, info)


def open_npz(path: str | Path, *, max_bytes: int, what: str = "avatar_nb timeline file") -> NpzArchive:
    """Open ``path`` as an ``.npz`` and read every member's headers, nothing more.

    ``ValueError`` naming the file when it is not a zip archive (``"is not an
    avatar_nb timeline file"``), a member is not an ``.npy`` of plain numbers whose
    header matches its declared size, a name repeats, there are more than 64 members,
    or the members' declared sizes add up to more than ``max_bytes``. ``OSError`` (a
    missing file, a folder) is left as it is.
    """
    path = Path(path)
    with open(path, "rb") as fh:  # OSError as it is
        if not zipfile.is_zipfile(fh):
            raise ValueError(f"{path} is not an {what}: it is not an .npz (zip) archive")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError) as exc:
        raise ValueError(f"{path} is not an {what}: {exc}") from None
    try:
        infos = zf.infolist()
        if len(infos) > _MAX_MEMBERS:
            raise ValueError(f"{path} is not an {what}: it has {len(infos)} members")
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            raise ValueError(f"{path} is not a valid {what}: a member name repeats")
        odd = [n for n in names if not n.endswith(".npy") or "/" in n]
        if odd:
            raise ValueError(f"{path} is not an {what}: member {odd[0][:80]!r} is not an .npy array")
        declared = sum(i.file_size for i in infos)
        if declared > max_bytes:
            raise ValueError(
                f"{path} declares {declared} bytes of arrays, more than the {max_bytes} read "
                "(pass a larger max_bytes to read it)"
            )
        members: dict[str, Any] = {}
        for info in infos:
            member = _member_header(path, zf, info, what)
            members[member.name] = member
    except BaseException:
        zf.close()
        raise
    return NpzArchive(path, zf, members, what)
