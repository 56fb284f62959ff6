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
import contextvars
import json
import logging
import math
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

from .batch import run_batch
from .experiments.clips import BadInput, collect_clips
from .experiments.engine import ClipResult, RunSettings
from .experiments.outputs import (
    VIDEO,
    Output,
    dataset_output,
    default_outputs,
    make_out_dir,
    render,
    unique_stems,
    write_summary_csv,
)
from .pacing import DEFAULT_CHUNK_MS, DEFAULT_PACING, PACING_MODES
from .progress import set_streaming_bars
from .protocol import DEFAULT_SAMPLE_RATE, SUPPORTED_SAMPLE_RATES

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

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


def _one_file(items: list[str]) -> bool:
    return len(items) == 1 and Path(items[0]).is_file()


def _print_tracebacks(results: list[ClipResult], debug: bool) -> None:
    if debug:
        for r in results:
            if r.traceback:
                print(r.traceback, file=sys.stderr, end="")


# ----------------------------------------------------------------------------- commands


def _cmd_run(args: argparse.Namespace) -> int:
    """``avatar-nb run``: the clips not yet animated in ``--out`` are streamed (a batch), then
    their files written, then the folder's summary. The rules of a folder (README, Command
    line): a run is known by its clip's name; a finished run (status ok, the same pacing,
    chunk and rate, its files there) is skipped; a run done again has all its files
    replaced together; ``summary.csv`` and the dataset describe every run of the folder.
    Ctrl-C keeps the runs that finished, says which did not, and exits 130; the same
    command resumes."""
    try:
        settings = RunSettings(pacing=args.pacing, chunk_ms=args.chunk_ms, sample_rate=args.sample_rate,
                               timeout=args.timeout)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    options = _endpoint_options(args)
    out_dir = _out_dir(args.out)  # also: a folder this process can write, before any session
    clips = collect_clips(args.audio, recursive=not args.no_recursive, raw_rate=args.raw_rate)

    # besides the per-clip files, the folder is a dataset that load_results(out) reads
    writers = [*run_writers(args), dataset_output()]
    kinds = [w.kind for w in writers]
    file_kinds = [k for k in kinds if k != "dataset"]
    previous = _previous_runs(out_dir)
    stems = _run_stems(clips, previous)
    todo = [c for c in clips if not _finished(previous.get(c.name), settings, file_kinds, out_dir)]
    if len(todo) < len(clips) and not args.json:
        print(
            f"{len(clips) - len(todo)} of {len(clips)} clips already animated in {out_dir} "
            f"(same settings); running {len(todo)}",
            file=sys.stderr,
            flush=True,
        )

    finished: dict[str, ClipResult] = {}
    printer = _InputOrder([c.name for c in todo], quiet=args.json)

    # one file: a bar of its seconds animated (many: the batch's bars, a line per running clip
    # below the clips bar); never with --json or --quiet
    set_streaming_bars(_one_file(args.audio) and not args.json and not args.quiet)

    def report(result: ClipResult) -> None:
        # light work beside the running sessions: lines in input order, as soon as they can
        finished[result.clip.name] = result
        printer.done(result)

    interrupted = False
    if todo:
        try:
            asyncio.run(
                run_batch(
                    todo,
                    settings,
                    concurrency=args.concurrency,
                    progress=not args.json and not args.quiet,
                    on_result=report,
                    **options,
                )
            )
        except KeyboardInterrupt:  # the runs that finished are kept below
            interrupted = True
    results = [finished[c.name] for c in todo if c.name in finished]

    # files once nothing streams any more, each written whole or not at all
    render(results, out_dir, writers, progress=not args.json and not args.quiet and not interrupted,
           stems={id(r): stems[r.clip.name] for r in results})
    problems = _record(results, out_dir, stems, previous)
    csv_path: Path | None = out_dir / "summary.csv"
    try:
        write_summary_csv([], csv_path, rows=_folder_rows(out_dir, clips, results, stems, kinds))
    except OSError as exc:
        problems.append(f"{csv_path}: cannot be written ({exc.strerror or exc})")
        csv_path = None
    failed = [r for r in results if r.status != "ok"]
    if args.json:
        for r in results:
            print(json.dumps({"run_id": stems[r.clip.name], **r.row(kinds)}, default=_json_value), flush=True)
    else:
        printer.flush()
        ok = len(results) - len(failed)
        where = f"summary: {csv_path}" if csv_path is not None else "summary.csv not written"
        skipped = len(clips) - len(todo)
        already = f", {skipped} already animated in {out_dir}" if skipped else ""
        print(f"{ok} of {len(todo)} clips animated{already}; {where}")
    _print_tracebacks(results, args.debug)
    for r in failed:
        print(f"avatar-nb: error: {r.error if r.bad_input else r.source + ': ' + r.error}", file=sys.stderr)
    for text in problems:
        print(f"avatar-nb: error: {text}", file=sys.stderr)
    if interrupted:
        left = [c.name for c in todo if c.name not in finished]
        shown = ", ".join(left[:5]) + (f" and {len(left) - 5} more" if len(left) > 5 else "")
        print(
            f"avatar-nb: interrupted: {len(results)} of {len(todo)} clips finished and kept in "
            f"{out_dir}; not animated: {shown}; the same command resumes",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_INTERRUPTED
    if any(r.bad_input for r in failed):
        return EXIT_BAD_INPUT
    return EXIT_FAILED if failed or problems else EXIT_OK


def _json_value(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


class _InputOrder:
    """Prints a line per finished clip in the order the clips were given (a clip's line
    waits for the clips before it); failures are said once, at the end."""

    def __init__(self, names: list[str], *, quiet: bool) -> None:
        self.names = names
        self.quiet = quiet
        self.ready: dict[str, ClipResult] = {}
        self.next = 0

    def done(self, result: ClipResult) -> None:
        self.ready[result.clip.name] = result
        self._print()

    def flush(self) -> None:
        """The lines still held (after an interruption, past the clips that never finished)."""
        self._print(everything=True)

    def _print(self, everything: bool = False) -> None:
        while self.next < len(self.names) and (everything or self.names[self.next] in self.ready):
            result = self.ready.pop(self.names[self.next], None)
            self.next += 1
            if result is not None and not self.quiet and result.status == "ok":
                from tqdm import tqdm

                tqdm.write(result.line(), file=sys.stdout)  # above the bar, not through it
                sys.stdout.flush()


def _previous_runs(out_dir: Path) -> dict[str, dict[str, Any]]:
    """The runs already in ``out_dir``'s dataset, by clip name (the latest row of each)."""
    from .dataset import RUNS_DIR
    from .dataset.catalog import Catalog

    if not (out_dir / RUNS_DIR).is_dir():
        return {}
    try:
        rows = Catalog(out_dir).rows.values()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadInput(f"--out {out_dir}: holds a dataset this avatar-nb cannot read ({exc})") from None
    return {str(row.get("clip")): dict(row) for row in rows if row.get("clip") is not None}


def _run_stems(clips: list[Any], previous: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The file stem (and run id) of each clip: the one its earlier run in the folder had, else
    a safe, unique one (:func:`~avatar_nb.experiments.outputs.unique_stems`)."""
    stems = {c.name: str(previous[c.name]["run_id"]) for c in clips if c.name in previous}
    taken = [str(row["run_id"]) for row in previous.values()]
    new = unique_stems([c.name for c in clips if c.name not in stems], taken)
    return {**stems, **new}


def _finished(row: dict[str, Any] | None, settings: RunSettings, kinds: list[str], out_dir: Path) -> bool:
    """Whether a clip's earlier run in the folder stands: ok, under these settings, with the
    files asked for now on disk."""
    if row is None or row.get("status") != "ok":
        return False
    try:
        same = (
            row.get("pacing") == settings.pacing
            and float(row.get("chunk_ms")) == float(settings.chunk_ms)  # type: ignore[arg-type]
            and int(row.get("sample_rate")) == int(settings.sample_rate)  # type: ignore[arg-type]
        )
    except (TypeError, ValueError):
        return False
    return same and all(_in_folder(out_dir, row.get(k)) is not None for k in kinds)


def _in_folder(out_dir: Path, recorded: Any) -> Path | None:
    """The file a row names (by its name, in ``out_dir``, wherever the run was started
    from), if it is there."""
    if not recorded or not isinstance(recorded, str):
        return None
    path = out_dir / Path(recorded).name
    return path if path.is_file() else None


def _record(
    results: list[ClipResult], out_dir: Path, stems: dict[str, str], previous: dict[str, dict[str, Any]]
) -> list[str]:
    """After the files: each run without a dataset row (a failure) gets one; files an earlier
    run of the same clip left and this one did not write go; the dataset is consolidated.
    The problems met, as lines for people."""
    from .dataset import consolidate, write_run

    problems: list[str] = []
    for r in results:
        if "dataset" not in r.outputs:
            try:
                write_run(out_dir, {"run_id": stems[r.clip.name], **r.row()})
            except Exception as exc:  # noqa: BLE001 - said in the summary; the others go on
                problems.append(f"{r.source}: its row could not be added to the dataset ({exc})")
        old = previous.get(r.clip.name, {})
        kept = {Path(p).name for p in r.outputs.values() if p}
        for kind in ("npz", "png", "mp4"):
            target = _in_folder(out_dir, old.get(kind))  # only files of this folder
            if target is not None and target.name not in kept:
                target.unlink()
    if results:
        try:
            consolidate(out_dir)
        except Exception as exc:  # noqa: BLE001 - the summary still says what happened
            problems.append(f"{out_dir}: the dataset could not be consolidated ({exc})")
    return problems


def _folder_rows(
    out_dir: Path, clips: list[Any], results: list[ClipResult], stems: dict[str, str], kinds: list[str]
) -> list[dict[str, Any]]:
    """Every run of the folder for ``summary.csv``: this command's clips in the order given,
    then the folder's other runs; a run missing from the dataset (its row could not be
    written) as this command saw it."""
    from .dataset.catalog import Catalog

    try:
        rows = {str(r["run_id"]): dict(r) for r in Catalog(out_dir).rows.values()}
    except (OSError, ValueError, KeyError, TypeError):
        rows = {}
    for r in results:
        stem = stems[r.clip.name]
        if stem not in rows or "dataset" not in r.outputs:
            rows[stem] = {"run_id": stem, **r.row(kinds)}
    ordered = [rows.pop(stems[c.name]) for c in clips if stems[c.name] in rows]
    return ordered + list(rows.values())


def _cmd_demo(args: argparse.Namespace) -> int:
    from .audio import speech_like, write_wav

    out_dir = _out_dir(args.out)
    settings = RunSettings(pacing=args.pacing, chunk_ms=args.chunk_ms)
    rate = settings.sample_rate
    clip = write_wav(out_dir / "demo.wav", speech_like(args.seconds, rate, seed=args.seed), rate)
    print(f"generated a {args.seconds:g} s speech-like clip: {clip}")
    print(f"streaming it through the embedded local avatar service ({args.pacing} pacing) ...")
    set_streaming_bars()  # a bar of the seconds animated, once the clip has streamed for 2 s
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


# serve's flags for LocalService's settings: (flag, keyword, metavar, default as shown,
# help). A flag not given keeps LocalService's default (which lives there; a test checks
# that the defaults shown here are its defaults), and LocalService checks every value given.
_SERVE_SETTINGS = (
    ("--fps", "fps", "FPS", "25", "keyframes a second, > 0"),
    ("--expression-dims", "n_expression", "E", "50", "expression coefficients per keyframe, int >= 0"),
    ("--latency-ms", "latency_ms", "MS", "80", "audio completing a keyframe to the keyframe, >= 0"),
    ("--jitter-ms", "jitter_ms", "MS", "0", "scale of seeded half-normal jitter on it, >= 0"),
    ("--av-offset-ms", "av_offset_ms", "MS", "0", "the mouth lags (+) or leads (-) the audio, -1000..1000"),
    ("--net-delay-ms", "net_delay_ms", "MS", "0", "one-way delay of every animation message, >= 0"),
    ("--bandwidth-bps", "bandwidth_bps", "BPS", "none", "link per connection, bits/s > 0 or none"),
    ("--idle-timeout", "idle_timeout", "S", "600", "no audio for S closes a session, > 0 or none"),
    ("--session-time-limit", "session_time_limit", "S", "none", "a session's longest life (then 4002), > 0 or none"),
    ("--max-sessions", "max_sessions", "N", "none", "sessions at once, then 429, >= 1 or none"),
    ("--credits-seconds", "credits_seconds", "S", "none", "audio seconds for all (then 4001), >= 0 or none"),
    ("--pause-limit", "pause_limit", "S", "30", "longest pause, then pause_timeout (--playout), > 0"),
)
_EGRESS_CHOICES = ("on", "off")


def _setting_value(text: str) -> Any:
    """A setting as typed: ``none`` is None, then an int, a float, else the text itself,
    which LocalService refuses with a message naming what it accepts."""
    if text.strip().lower() == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _serve_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """LocalService's keyword arguments from serve's flags, checked by LocalService itself:
    a value it refuses is a BadInput naming the flag and what is accepted."""
    from .server import LocalService

    kwargs: dict[str, Any] = {"realtime": args.service_speed == "realtime", "playout": args.playout}
    # settings not given keep LocalService's own defaults, which live there alone
    for _, key, *_ in _SERVE_SETTINGS:
        text = getattr(args, key)
        if text is not None:
            kwargs[key] = _setting_value(text)
    egress = args.egress.strip().lower()
    if egress not in _EGRESS_CHOICES:
        raise BadInput(f"--egress must be on or off, got {args.egress!r}")
    kwargs["egress"] = egress == "on"
    for key in ("api_key", "app_id"):
        if getattr(args, key):
            kwargs[key] = getattr(args, key)
    if args.avatar_id:
        kwargs["avatar_ids"] = [args.avatar_id]
    if args.replay:
        kwargs["replay"] = args.replay
    try:
        LocalService(args.host, args.port, **kwargs)  # checks every value; nothing listens yet
    except ValueError as exc:
        message = str(exc).replace(" or None", " or none").replace("got None", "got none")
        for flag, key, *_ in _SERVE_SETTINGS:
            if message.startswith(key + " "):
                message = flag + message[len(key):]
                break
        raise BadInput(message) from None
    return kwargs


def _cmd_serve(args: argparse.Namespace) -> int:
    from .server import serve_forever

    kwargs = _serve_kwargs(args)
    from .endpoints import ENV_VARS
    from .server.service import describe

    def ready(svc: Any) -> None:
        # printed only once the socket listens: a script may wait for these lines. The
        # egress secrets are in describe's lines, here and nowhere else (not in a log,
        # a repr or an error): they are made for this process, and a client needs them
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


def for_people(text: str) -> str:
    """Docstring text (reST) as plain text for a terminal: ``code`` and :role:`target`
    become their words."""
    import re

    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
    return re.sub(r"``([^`]+)``", r"\1", text)


_EPILOG = """\
commands, in short:
  avatar-nb demo [--out DIR]                 a generated speech clip through the embedded service
  avatar-nb run AUDIO [AUDIO ...] --out DIR  files, folders or globs; one .npz + .png per clip
  avatar-nb serve [--host H --port P]        the local service until Ctrl-C

Without --console-url ... (or the AVATAR_NB_* variables) run and demo use an embedded
local service. Exit codes: 0 done, 1 a clip failed, 2 bad input (one line naming the
file), 130 interrupted. --debug shows tracebacks; COMMAND --help shows its options."""

_RUN_DESCRIPTION = """\
Animate audio files through the avatar service, then write per clip a .npz timeline
(and a .png figure, an .mp4 with --video) into --out, which is also a dataset that
avatar_nb.load_results(OUT) reads, with summary.csv describing every run in it.

Running into a folder used before: a run is known by its clip's name (the file's stem).
A clip whose run there finished (status ok, the same pacing, chunk and sample rate, and
the files asked for present) is skipped; any other is run again and all of its files
are replaced together. Ctrl-C keeps the clips that finished and says which did not;
the same command then resumes. File names are made from clip names so that they stay
inside --out: separators, leading dots and characters some systems refuse become '_',
names are cut to 80 characters, a changed name gets a hash of the original, and names
that differ only in case get -2, -3 ..."""


class _OneLineHelp(argparse.HelpFormatter):
    """serve's settings one line each: the help column after the longest flag, and at
    least 100 columns (a narrower terminal wraps them itself)."""

    def __init__(self, prog: str) -> None:
        import shutil

        super().__init__(prog, max_help_position=32, width=max(100, shutil.get_terminal_size().columns))


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="avatar-nb",
        description=for_people(__doc__.split("\n\n")[0]),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"avatar-nb {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chunk_help = f"audio chunk length in ms (default {DEFAULT_CHUNK_MS:g})"

    run = sub.add_parser("run", parents=[common], help="animate audio files (WAV, FLAC, Ogg, MP3 ... or raw s16le)",
                         description=_RUN_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
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

    serve = sub.add_parser("serve", parents=[common], help="run the local avatar service until Ctrl-C",
                           formatter_class=_OneLineHelp)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=8765, help="0 picks a free port (default 8765)")
    for flag, key, metavar, default, help_text in _SERVE_SETTINGS:
        serve.add_argument(flag, dest=key, metavar=metavar, default=None, help=f"{help_text} (default {default})")
    serve.add_argument("--playout", action="store_true",
                       help="simulate a player: pause, resume, playback states (default off)")
    serve.add_argument("--egress", default="on", metavar="{on,off}",
                       help="simulated LiveKit/Agora egress, credentials printed (default on)")
    serve.add_argument("--api-key", default=None, help="use this API key instead of a generated one")
    serve.add_argument("--app-id", default=None, help="use this app id instead of a generated one")
    serve.add_argument("--avatar-id", default=None, help="use this avatar id instead of a generated one")
    _add_service_speed(serve)
    serve.add_argument("--replay", default=None, metavar="FILE",
                       help="answer with the messages of a capture (avatar-nb tap), timed as recorded")
    serve.set_defaults(func=_cmd_serve)
    from .tap.cli import add_tap_parser

    add_tap_parser(sub, common)
    return parser


def _interrupt(signum: int, frame: Any) -> None:
    # SIGINT itself, not a KeyboardInterrupt raised here: whatever handles Ctrl-C at this
    # moment (asyncio.run cancels its main task, letting it close what it holds) handles it
    signal.raise_signal(signal.SIGINT)


def _terminate_as_ctrl_c() -> Any:
    """SIGTERM (``kill``, a container's stop, a job scheduler's) ends a command as Ctrl-C
    does: finished runs kept and summarised, captures and datasets closed whole. Installed
    only over the default action, from the main thread; returns what to restore."""
    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None
    signal.signal(signal.SIGTERM, _interrupt)
    return signal.SIG_DFL


class _InterruptedTasks(logging.Filter):
    """Drops asyncio's "Task exception was never retrieved" report of a task a second
    Ctrl-C ended during the wind-down: the command's one interrupted line says it."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, KeyboardInterrupt)


_QUIET_INTERRUPTS = _InterruptedTasks()


def _quiet_unraisable(hook: Any) -> Any:
    """``sys.unraisablehook`` that says nothing of a KeyboardInterrupt a second Ctrl-C
    raised inside a callback or finaliser (Python can only print those), else ``hook``."""

    def unraisable(info: Any) -> None:
        if not isinstance(info.exc_value, KeyboardInterrupt):
            hook(info)

    return unraisable


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    restore = _terminate_as_ctrl_c()
    logging.getLogger("asyncio").addFilter(_QUIET_INTERRUPTS)  # once: a filter is kept in a set
    unraisable_hook = sys.unraisablehook
    sys.unraisablehook = _quiet_unraisable(unraisable_hook)
    try:
        # in a context of its own: what a command sets (its streaming bars) ends with it
        return int(contextvars.copy_context().run(args.func, args))
    except BadInput as exc:
        if args.debug:
            traceback.print_exc()
        print(f"avatar-nb: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        # a Ctrl-C the command did not turn into its own line (a second one during its
        # wind-down): what it wrote is whole (every file is written whole or not at all)
        print("avatar-nb: interrupted (files already written are whole)", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - any other failure is one line, exit 1
        if args.debug:
            traceback.print_exc()
        print(f"avatar-nb: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        sys.unraisablehook = unraisable_hook
        if restore is not None:
            signal.signal(signal.SIGTERM, restore)


if __name__ == "__main__":
    sys.exit(main())
