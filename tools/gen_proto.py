"""Generate avatar_nb's protobuf code from proto/message.proto.

    python tools/gen_proto.py            # writes src/avatar_nb/proto/message_pb2.py(+.pyi)
    python tools/gen_proto.py --out DIR  # writes the same two files into DIR

The compiler is the protoc bundled in grpcio-tools, pinned in pyproject.toml's
``dev`` extra, so the generated files do not depend on what is on the machine.
The schema is compiled under the virtual path ``avatar_nb/v2/message.proto``: that is
the name it gets in protobuf's descriptor pool, which must differ from the names the
official clients register (``message.proto``, ``driveningress/v2/driveningress.proto``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
DEFAULT_OUT = ROOT / "src" / "avatar_nb" / "proto"
VIRTUAL_DIR = "avatar_nb/v2"
OUTPUTS = ("message_pb2.py", "message_pb2.pyi")


def generate(out_dir: Path) -> list[Path]:
    """Compile the schema and write the generated files into ``out_dir``."""
    from grpc_tools import protoc  # imported here: only the dev extra has it

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{VIRTUAL_DIR}={PROTO_DIR}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"{VIRTUAL_DIR}/message.proto",
        ]
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed on proto/message.proto")
        written = []
        for name in OUTPUTS:
            target = out_dir / name
            shutil.copyfile(Path(tmp) / VIRTUAL_DIR / name, target)
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
