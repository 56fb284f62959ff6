"""Command line entry point: ``avatar-nb`` (also ``python -m avatar_nb``)."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from . import _pcm
from .protocol import ClientConnection, ServerConnection


def _demo(args: argparse.Namespace) -> int:
    """Run a generated clip through the client and service protocol objects, in memory."""
    rate = 16000
    t = np.arange(rate * 2) / rate
    clip = 0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 3 * t) > 0)
    pcm = _pcm.to_s16le(clip.astype(np.float32))
    client, server = ClientConnection(sample_rate=rate), ServerConnection("demo", capabilities=["fps:25"])
    server.receive(client.configure())
    client.receive(server.confirm())
    req_id, messages = client.audio_messages(pcm, 1280)
    for m in messages:
        server.receive(m)
    rms = _pcm.frame_features(pcm, rate, 25)["rms"]
    print(f"{len(messages)} audio messages for request {req_id}; {len(rms)} frames of features")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="avatar-nb", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="run a generated clip through avatar_nb").set_defaults(func=_demo)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
