"""``avatar-nb``: animate audio files, serve the local avatar service, run the demo.

    avatar-nb demo [--out DIR]                  a generated speech clip through the embedded service
    avatar-nb run AUDIO [AUDIO ...] --out DIR   files, folders or globs; one .npz + .png per clip
    avatar-nb serve [--host H --port P]         the local service until Ctrl-C (--service-speed)

This module parses arguments, calls the library (:mod:`avatar_nb.batch`) and maps
errors to exit codes. Without endpoints (``--console-url`` ... or the ``AVATAR_NB_*``
variables) ``run`` and ``demo`` use an embedded LocalService. Bad input (a missing
file, a folder without audio, a file that is not readable audio) gives one line naming
the file and the problem and exit code 2; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import traceback
from pathlib import Path
from typing import Any

from .batch import run_batch
from .experiments.clips import BadInput
from .experiments.engine import ClipResult, RunSettings
from .experiments.outputs import (
    VIDEO,
    Output,
    dataset_output,
    default_outputs,
    make_out_dir,
    write_summary_csv,
)
from .flame import DEFAULT_FPS
from .pacing import DEFAULT_CHUNK_MS, DEFAULT_PACING, PACING_MODES
from .protocol import DEFAULT_SAMPLE_RATE, SUPPORTED_SAMPLE_RATES

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

_REMOTE_FLAGS = (
    ("console_endpoint_url", "--console-url", "console endpoint URL of a remote service"),
    ("ingress_endpoint_url", "--ingress-url", "ingress endpoint URL of a remote service"),
    ("api_key", "--api-key", "API key (never printed)"),
    ("app_id", "--app-id", "application id"),
    ("avatar_id", "--avatar-id", "avatar id"),
)


def _endpoint_options(args: argparse.Namespace) -> dict[str, str]:
    """Remote service options from the flags; :func:`avatar_nb.endpoints.remote_options`
    completes them from the ``AVATAR_NB_*`` variables (all or none)."""
    from .endpoints import IncompleteEndpoints, remote_options

    flags = {key: getattr(args, flag.lstrip("-").replace("-", "_")) for key, flag, _ in _REMOTE_FLAGS}
    try:
        return remote_options(flags)
    except IncompleteEndpoints as exc:
        missing = [flag for key, flag, _ in _REMOTE_FLAGS if key in exc.missing]
        raise BadInput(
            "a remote service needs all of its endpoints and credentials; missing "
            + ", ".join(missing)
            + " (or the matching AVATAR_NB_* variables)"
        ) from None


def run_writers(args: argparse.Namespace) -> list[Output]:
    """The files ``run`` and ``demo`` write per clip, in the batch's render phase (after
    every session ended). Further outputs (a video ...) append their :class:`Output` here."""
    writers = default_outputs(plot=not getattr(args, "no_plot", False))
    return [*writers, VIDEO] if getattr(args, "video", False) else writers


def _out_dir(text: str) -> Path:
    out_dir = Path(text)
    try:
        make_out_dir(out_dir)
    except BadInput as exc:
        raise BadInput(f"--out {exc}") from None
    return out_dir


def _print_tracebacks(results: list[ClipResult], debug: bool) -> None:
    if debug:
        for r in results:
            if r.traceback:
                print(r.traceback, file=sys.stderr, end="")


# ----------------------------------------------------------------------------- commands


def _cmd_run(args: argparse.Namespace) -> int:
    try:
        settings = RunSettings(pacing=args.pacing, chunk_ms=args.chunk_ms, sample_rate=args.sample_rate,
                               timeout=args.timeout)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    options = _endpoint_options(args)
    out_dir = _out_dir(args.out)
    from .dataset import consolidate

    # besides the per-clip files, the folder is a dataset that load_results(out) reads
    writers = [*run_writers(args), dataset_output()]

    def report(result: ClipResult) -> None:
        # a line per clip as it finishes streaming; light work beside the running sessions
        if not args.json and result.status == "ok":
            from tqdm import tqdm

            tqdm.write(result.line(), file=sys.stdout)  # above the bar, not through it
            sys.stdout.flush()

    results = asyncio.run(
        run_batch(
            args.audio,
            settings,
            concurrency=args.concurrency,
            out=out_dir,
            writers=writers,
            raw_rate=args.raw_rate,
            recursive=not args.no_recursive,
            progress=not args.json and not args.quiet,
            on_result=report,
            **options,
        )
    )
    kinds = [w.kind for w in writers]
    if any(r.status == "ok" for r in results):
        consolidate(out_dir)
    csv_path = write_summary_csv(results, out_dir / "summary.csv", kinds)
    failed = [r for r in results if r.status != "ok"]
    if args.json:
        for r in results:
            print(json.dumps(r.row(kinds)), flush=True)
    else:
        print(f"{len(results) - len(failed)} of {len(results)} clips animated; summary: {csv_path}")
    _print_tracebacks(results, args.debug)
    for r in failed:
        print(f"avatar-nb: error: {r.error if r.bad_input else r.source + ': ' + r.error}", file=sys.stderr)
    if any(r.bad_input for r in failed):
        return EXIT_BAD_INPUT
    return EXIT_FAILED if failed else EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from .audio import speech_like, write_wav

    out_dir = _out_dir(args.out)
    settings = RunSettings(pacing=args.pacing, chunk_ms=args.chunk_ms)
    rate = settings.sample_rate
    clip = write_wav(out_dir / "demo.wav", speech_like(args.seconds, rate, seed=args.seed), rate)
    print(f"generated a {args.seconds:g} s speech-like clip: {clip}")
    print(f"streaming it through the embedded local avatar service ({args.pacing} pacing) ...")
    results = asyncio.run(
        run_batch(
            [clip],
            settings,
            concurrency=1,
            out=out_dir,
            writers=run_writers(args),
            progress=False,
        )
    )
    result = results[0]
    _print_tracebacks(results, args.debug)
    if result.status != "ok":
        print(f"avatar-nb: error: {result.error}", file=sys.stderr)
        return EXIT_FAILED
    print(result.line())
    if "png" in result.outputs:
        print(f"open {result.outputs['png']} for the waveform, animation channels and frame timing;")
    print(f"load the timeline in Python with: avatar_nb.Timeline.load({result.outputs['npz']!r})")
    return EXIT_OK


def _cmd_serve(args: argparse.Namespace) -> int:
    from .server import serve_forever

    kwargs: dict[str, Any] = {"realtime": args.service_speed == "realtime"}
    # settings not given keep LocalService's own defaults, which live there alone
    for key, value in (
        ("fps", args.fps),
        ("latency_ms", args.latency_ms),
        ("jitter_ms", args.jitter_ms),
        ("n_expression", args.expression_dims),
    ):
        if value is not None:
            kwargs[key] = value
    for key in ("api_key", "app_id"):
        if getattr(args, key):
            kwargs[key] = getattr(args, key)
    if args.avatar_id:
        kwargs["avatar_ids"] = [args.avatar_id]
    from .endpoints import ENV_VARS
    from .server.service import describe

    def ready(svc: Any) -> None:
        # printed only once the socket listens: a script may wait for these lines
        values = svc.session_kwargs()
        print(describe(svc), flush=True)
        print("animate against it from another shell with:")
        for key, var in ENV_VARS.items():
            print(f"  export {var}={values[key]}")
        print("  avatar-nb run AUDIO --out DIR")
        print("press Ctrl-C to stop", flush=True)

    try:
        serve_forever(args.host, args.port, ready=ready, **kwargs)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if "address already in use" in str(exc).lower():
            reason = "address already in use"
        raise BadInput(f"cannot listen on {args.host}:{args.port}: {reason}") from exc
    print("stopped", flush=True)
    return EXIT_OK


# ----------------------------------------------------------------------------- parser


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive integer")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is out of range; accepted: 0 (any free port) to 65535")
    return value


def _sample_rate(text: str) -> int:
    value = _positive_int(text)
    if value not in SUPPORTED_SAMPLE_RATES:
        raise argparse.ArgumentTypeError(
            f"unsupported sample rate {value}; accepted: {', '.join(map(str, SUPPORTED_SAMPLE_RATES))}"
        )
    return value


def _add_pacing(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--pacing", choices=PACING_MODES, default=DEFAULT_PACING,
        help=f"how audio chunks are paced onto the wire (default {DEFAULT_PACING}; see avatar_nb.pacing)",
    )
    group.add_argument("--realtime", dest="pacing", action="store_const", const=DEFAULT_PACING,
                       help=f"same as --pacing {DEFAULT_PACING}")
    group.add_argument("--fast", dest="pacing", action="store_const", const="fast", help="same as --pacing fast")


SERVICE_SPEEDS = ("realtime", "fast")


class _DeprecatedSpeed(argparse.Action):
    """``serve --realtime`` / ``serve --fast``: the old spellings of ``--service-speed``, which
    read like the client pacing flags of ``run``; they still work, with a warning."""

    def __init__(self, option_strings: list[str], dest: str, speed: str, **kwargs: Any) -> None:
        self.speed = speed
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        import warnings

        message = (
            f"serve {option_string} is deprecated and goes in the next release; "
            f"use --service-speed {self.speed}"
        )
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        print(f"avatar-nb: warning: {message}", file=sys.stderr)
        setattr(namespace, self.dest, self.speed)


def _add_service_speed(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--service-speed", choices=SERVICE_SPEEDS, default="realtime",
        help="how fast the service sends keyframes: realtime, at the pace of the audio (default), "
        "or fast, as fast as it can",
    )
    group.add_argument("--realtime", dest="service_speed", action=_DeprecatedSpeed, speed="realtime",
                       help="deprecated: --service-speed realtime")
    group.add_argument("--fast", dest="service_speed", action=_DeprecatedSpeed, speed="fast",
                       help="deprecated: --service-speed fast")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avatar-nb", description=__doc__.split("\n\n")[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chunk_help = f"audio chunk length in ms (default {DEFAULT_CHUNK_MS:g})"

    run = sub.add_parser("run", parents=[common], help="animate audio files (WAV, FLAC, Ogg, MP3 ... or raw s16le)")
    run.add_argument("audio", nargs="+", help="files, folders (with their subfolders) or glob patterns")
    run.add_argument("--no-recursive", action="store_true", help="read only the top level of each folder")
    run.add_argument("--out", required=True, help="output folder for .npz, .png and summary.csv")
    run.add_argument("--raw-rate", type=_positive_int, default=None, help="sample rate of raw .pcm/.raw/.s16le input")
    run.add_argument("--sample-rate", type=_sample_rate, default=DEFAULT_SAMPLE_RATE,
                     help=f"session sample rate (default {DEFAULT_SAMPLE_RATE})")
    run.add_argument("--chunk-ms", type=_positive_float, default=DEFAULT_CHUNK_MS, help=chunk_help)
    run.add_argument("--concurrency", type=_positive_int, default=4, help="sessions at once (default 4)")
    run.add_argument("--timeout", type=_positive_float, default=None, help="seconds to wait for each clip's end frame")
    run.add_argument("--json", action="store_true", help="one JSON object per clip on stdout (times in seconds)")
    run.add_argument("--no-plot", action="store_true", help="skip the .png figures")
    run.add_argument("--video", action="store_true", help="also write each run as an .mp4 (face, waveform, audio)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_pacing(run)
    for _, flag, help_text in _REMOTE_FLAGS:
        run.add_argument(flag, default=None, help=help_text)
    run.set_defaults(func=_cmd_run)

    demo = sub.add_parser("demo", parents=[common], help="animate a generated speech-like clip with the embedded service")
    demo.add_argument("--out", default="avatar_nb_out/demo", help="output folder (default avatar_nb_out/demo)")
    demo.add_argument("--seconds", type=_positive_float, default=5.0, help="clip length (default 5)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the generated clip")
    demo.add_argument("--chunk-ms", type=_positive_float, default=DEFAULT_CHUNK_MS, help=chunk_help)
    _add_pacing(demo)
    demo.set_defaults(func=_cmd_demo)

    serve = sub.add_parser("serve", parents=[common], help="run the local avatar service until Ctrl-C")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_port, default=8765, help="0 picks a free port (default 8765)")
    serve.add_argument("--fps", type=_positive_float, default=None, help=f"keyframes a second (default {DEFAULT_FPS:g})")
    serve.add_argument("--latency-ms", type=float, default=None, help="processing latency in ms (default: LocalService's)")
    serve.add_argument("--jitter-ms", type=float, default=None, help="half-normal jitter scale in ms (default: none)")
    serve.add_argument("--expression-dims", type=int, default=None, help="expression coefficients per keyframe (default: LocalService's)")
    serve.add_argument("--api-key", default=None, help="use this API key instead of a generated one")
    serve.add_argument("--app-id", default=None)
    serve.add_argument("--avatar-id", default=None)
    _add_service_speed(serve)
    serve.set_defaults(func=_cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except BadInput as exc:
        if args.debug:
            traceback.print_exc()
        print(f"avatar-nb: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - any other failure is one line, exit 1
        if args.debug:
            traceback.print_exc()
        print(f"avatar-nb: error: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
