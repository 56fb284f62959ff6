"""``avatar-nb``: animate audio files, serve the local avatar service, run the demo.

    avatar-nb demo [--out DIR]                  a generated speech clip through the embedded service
    avatar-nb run AUDIO [AUDIO ...] --out DIR   files, folders or globs; one .npz + .png per clip
    avatar-nb serve [--host H --port P]         the local service until Ctrl-C
    avatar-nb bench [NAME [ARGS ...]]           list or run the benchmark scripts of a checkout

Without endpoints (``--console-url`` ... or the ``AVATAR_NB_*`` variables) ``run`` and
``demo`` use an embedded LocalService. Bad input (a missing file, a folder without
audio, a file that is not readable audio) gives one line naming the file and the
problem and exit code 2; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import csv
import glob
import json
import math
import os
import subprocess
import sys
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .protocol import SUPPORTED_SAMPLE_RATES

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

AUDIO_SUFFIXES = (".wav", ".wave")
RAW_SUFFIXES = (".pcm", ".raw", ".s16le")


class BadInput(Exception):
    """Input the user must fix; reported as one line with exit code 2."""


# ----------------------------------------------------------------------------- inputs


def discover_inputs(items: list[str], *, raw: bool) -> list[Path]:
    """Expand files, folders and glob patterns into a sorted, de-duplicated list of audio files."""
    suffixes = AUDIO_SUFFIXES + (RAW_SUFFIXES if raw else ())
    found: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
            if not files:
                kinds = ", ".join(suffixes)
                raise BadInput(f"{item}: directory contains no audio files ({kinds})")
            found.extend(files)
        elif path.exists():
            found.append(path)
        elif any(ch in item for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True) if Path(m).is_file())
            if not matches:
                raise BadInput(f"{item}: no files match this pattern")
            found.extend(matches)
        else:
            raise BadInput(f"{item}: no such file or directory")
    unique: list[Path] = []
    seen: set[Path] = set()
    for p in found:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def load_clip(path: Path, *, raw_rate: int | None, target_rate: int) -> bytes:
    """Mono s16le PCM at ``target_rate`` from a WAV file or (with ``raw_rate``) raw s16le."""
    from .audio import AudioFormatError, prepare_audio

    try:
        if path.suffix.lower() in RAW_SUFFIXES:
            if raw_rate is None:
                raise BadInput(f"{path}: raw PCM needs --raw-rate HZ (its sample rate)")
            data = path.read_bytes()
            if not data:
                raise BadInput(f"{path}: contains no audio samples")
            if len(data) % 2:
                raise BadInput(f"{path}: raw s16le has an odd number of bytes ({len(data)})")
            return prepare_audio(data, raw_rate, target_rate=target_rate)
        return prepare_audio(path, target_rate=target_rate)
    except AudioFormatError as exc:
        raise BadInput(str(exc)) from exc
    except OSError as exc:
        raise BadInput(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from exc
    except ValueError as exc:
        raise BadInput(f"{path}: {exc}") from exc


# ----------------------------------------------------------------------------- running


@dataclass
class ClipResult:
    source: str
    name: str
    status: str = "pending"
    error: str = ""
    bad_input: bool = False
    summary: dict[str, Any] = field(default_factory=dict)
    npz: str = ""
    png: str = ""

    def line(self) -> str:
        if self.status != "ok":
            return f"{self.source}: FAILED: {self.error}"
        s = self.summary

        def ms(v: Any) -> str:
            return "n/a" if v is None else f"{v * 1000:.1f} ms"

        rtf = "n/a" if s.get("real_time_factor") is None else f"{s['real_time_factor']:.3f}"
        outputs = ", ".join(p for p in (self.npz, self.png) if p)
        return (
            f"{self.source}: {s.get('audio_seconds') or 0:.2f} s audio, {s.get('keyframes')} keyframes, "
            f"first frame {ms(s.get('first_frame_latency'))}, RTF {rtf} -> {outputs}"
        )

    def record(self) -> dict[str, Any]:
        s = self.summary

        def ms(key: str) -> float | None:
            return None if s.get(key) is None else round(s[key] * 1000.0, 3)

        return {
            "source": self.source,
            "name": self.name,
            "status": self.status,
            "error": self.error,
            "audio_seconds": s.get("audio_seconds"),
            "keyframes": s.get("keyframes"),
            "first_frame_latency_ms": ms("first_frame_latency"),
            "jitter_ms": ms("jitter"),
            "lateness_p99_ms": ms("lateness_p99"),
            "real_time_factor": s.get("real_time_factor"),
            "complete": s.get("complete"),
            "npz": self.npz,
            "png": self.png,
        }


_RENDER_LOCK = threading.Lock()


def _render(timeline: Any, path: Path) -> None:
    from . import plots

    with _RENDER_LOCK:  # matplotlib's renderers are not meant to run concurrently
        fig = plots.report(timeline)
        fig.savefig(path, dpi=100)


def _names(paths: list[Path]) -> list[str]:
    names: list[str] = []
    used: dict[str, int] = {}
    for p in paths:
        stem = p.stem or "clip"
        count = used.get(stem, 0)
        used[stem] = count + 1
        names.append(stem if count == 0 else f"{stem}_{count + 1}")
    return names


def _endpoint_options(args: argparse.Namespace) -> dict[str, str]:
    from .pipeline import endpoints_from_env

    options = endpoints_from_env()
    for key, value in (
        ("console_endpoint_url", args.console_url),
        ("ingress_endpoint_url", args.ingress_url),
        ("api_key", args.api_key),
        ("app_id", args.app_id),
        ("avatar_id", args.avatar_id),
    ):
        if value:
            options[key] = value
    if options:
        missing = [
            flag
            for key, flag in (
                ("console_endpoint_url", "--console-url"),
                ("ingress_endpoint_url", "--ingress-url"),
                ("api_key", "--api-key"),
                ("app_id", "--app-id"),
                ("avatar_id", "--avatar-id"),
            )
            if not options.get(key)
        ]
        if missing:
            raise BadInput(
                "a remote service needs all of its endpoints and credentials; missing "
                + ", ".join(missing)
                + " (or the matching AVATAR_NB_* variables)"
            )
    return options


async def run_batch(
    paths: list[Path],
    out_dir: Path,
    *,
    raw_rate: int | None,
    sample_rate: int,
    chunk_ms: float,
    realtime: bool,
    concurrency: int,
    options: dict[str, str],
    plot: bool = True,
    timeout: float | None = None,
    progress: bool = True,
    on_result: Any = None,
) -> list[ClipResult]:
    """Animate every clip with at most ``concurrency`` sessions at once; never stop on a failure.

    All clips share this event loop and (without remote ``options``) one embedded
    LocalService. ``on_result(result)`` is called as each clip finishes, in completion
    order; the returned list is in input order.
    """
    from tqdm.auto import tqdm

    from .pipeline import animate
    from .server import LocalService

    make_out_dir(out_dir)
    results = [ClipResult(str(p), name) for p, name in zip(paths, _names(paths))]
    service = None if options else LocalService(realtime=realtime)
    semaphore = asyncio.Semaphore(concurrency)
    bar = tqdm(total=len(paths), unit="clip", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    hours = 0.0

    async def one(path: Path, result: ClipResult) -> None:
        nonlocal hours
        async with semaphore:
            try:
                pcm = await asyncio.to_thread(load_clip, path, raw_rate=raw_rate, target_rate=sample_rate)
                tl = await animate(
                    pcm,
                    sample_rate,
                    service=service,
                    chunk_ms=chunk_ms,
                    realtime=realtime,
                    timeout=timeout,
                    target_rate=sample_rate,
                    **options,
                )
                tl.meta["source"] = str(path)
                npz = tl.save(out_dir / f"{result.name}.npz")
                result.npz = str(npz)
                if plot:
                    png = out_dir / f"{result.name}.png"
                    await asyncio.to_thread(_render, tl, png)
                    result.png = str(png)
                result.summary = tl.summary()
                result.status = "ok"
                hours += (result.summary.get("audio_seconds") or 0.0) / 3600.0
            except BadInput as exc:
                result.status, result.error, result.bad_input = "failed", str(exc), True
                if os.environ.get("AVATAR_NB_DEBUG"):
                    traceback.print_exc()
            except Exception as exc:  # noqa: BLE001 - reported per clip; the batch goes on
                result.status, result.error = "failed", str(exc) or type(exc).__name__
                result.summary = {}
                if os.environ.get("AVATAR_NB_DEBUG"):
                    traceback.print_exc()
            bar.update(1)
            bar.set_postfix_str(f"{hours:.4f} h audio")
            if on_result is not None:
                on_result(result)

    try:
        if service is not None:
            await service.__aenter__()
        await asyncio.gather(*(one(p, r) for p, r in zip(paths, results)))
    finally:
        bar.close()
        if service is not None:
            await service.__aexit__(None, None, None)
    return results


def make_out_dir(out_dir: Path) -> None:
    """Create the output folder; a path that cannot be one is the user's to fix."""
    if out_dir.exists() and not out_dir.is_dir():
        raise BadInput(f"--out {out_dir}: exists and is not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"--out {out_dir}: cannot create this folder ({exc.strerror or exc})") from exc


def write_summary_csv(results: list[ClipResult], path: Path) -> Path:
    fields = list(ClipResult("", "").record())
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for r in results:
            writer.writerow({k: ("" if v is None else v) for k, v in r.record().items()})
    return path


# ----------------------------------------------------------------------------- commands


def _cmd_run(args: argparse.Namespace) -> int:
    paths = discover_inputs(args.audio, raw=args.raw_rate is not None)
    options = _endpoint_options(args)
    out_dir = Path(args.out)

    def report(result: ClipResult) -> None:
        from tqdm import tqdm

        if args.json:
            print(json.dumps(result.record()), flush=True)
        elif result.status == "ok":
            tqdm.write(result.line(), file=sys.stdout)  # above the bar, not through it
            sys.stdout.flush()

    results = asyncio.run(
        run_batch(
            paths,
            out_dir,
            raw_rate=args.raw_rate,
            sample_rate=args.sample_rate,
            chunk_ms=args.chunk_ms,
            realtime=args.realtime,
            concurrency=args.concurrency,
            options=options,
            plot=not args.no_plot,
            timeout=args.timeout,
            progress=not args.json and not args.quiet,
            on_result=report,
        )
    )
    csv_path = write_summary_csv(results, out_dir / "summary.csv")
    failed = [r for r in results if r.status != "ok"]
    if not args.json:
        print(f"{len(results) - len(failed)} of {len(results)} clips animated; summary: {csv_path}")
    for r in failed:
        print(f"avatar-nb: error: {r.error if r.bad_input else r.source + ': ' + r.error}", file=sys.stderr)
    if any(r.bad_input for r in failed):
        return EXIT_BAD_INPUT
    return EXIT_FAILED if failed else EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from .audio import speech_like, write_wav

    out_dir = Path(args.out)
    make_out_dir(out_dir)
    clip = write_wav(out_dir / "demo.wav", speech_like(args.seconds, 16000, seed=args.seed), 16000)
    print(f"generated a {args.seconds:g} s speech-like clip: {clip}")
    print("streaming it through the embedded local avatar service" + (" in real time ..." if args.realtime else " ..."))
    results = asyncio.run(
        run_batch(
            [clip],
            out_dir,
            raw_rate=None,
            sample_rate=16000,
            chunk_ms=args.chunk_ms,
            realtime=args.realtime,
            concurrency=1,
            options={},
            progress=False,
        )
    )
    result = results[0]
    if result.status != "ok":
        print(f"avatar-nb: error: {result.error}", file=sys.stderr)
        return EXIT_FAILED
    print(result.line())
    print(f"open {result.png} for the waveform, animation channels and frame timing;")
    print(f"load the timeline in Python with: avatar_nb.Timeline.load({result.npz!r})")
    return EXIT_OK


def _cmd_serve(args: argparse.Namespace) -> int:
    from .server import serve_forever

    kwargs: dict[str, Any] = {
        "fps": args.fps,
        "realtime": args.realtime,
        "latency_ms": args.latency_ms,
        "jitter_ms": args.jitter_ms,
        "n_expression": args.expression_dims,
    }
    for key in ("api_key", "app_id"):
        if getattr(args, key):
            kwargs[key] = getattr(args, key)
    if args.avatar_id:
        kwargs["avatar_ids"] = [args.avatar_id]
    from .pipeline import ENV_VARS
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


def find_benchmarks(folder: str | None) -> Path:
    """The ``benchmarks/`` folder: the given one, else the current checkout's, else the package's."""
    if folder is not None:
        candidates = [Path(folder)]
    else:
        candidates = [Path.cwd() / "benchmarks", Path(__file__).resolve().parents[2] / "benchmarks"]
    for path in candidates:
        if path.is_dir() and any(path.glob("bench_*.py")):
            return path
    where = ", ".join(str(p) for p in candidates)
    raise BadInput(f"no benchmark scripts (bench_*.py) in {where}; they ship with a source checkout")


def _first_doc_line(script: Path) -> str:
    try:
        doc = ast.get_docstring(ast.parse(script.read_text()))
    except (OSError, SyntaxError, ValueError):
        doc = None
    return (doc or "").strip().splitlines()[0] if doc else ""


def _cmd_bench(args: argparse.Namespace) -> int:
    folder = find_benchmarks(args.dir)
    scripts = {p.stem.removeprefix("bench_"): p for p in sorted(folder.glob("bench_*.py"))}
    if args.name is None:
        width = max(len(n) for n in scripts)
        print(f"benchmarks in {folder} (run one with: avatar-nb bench NAME [ARGS ...]):")
        for name, script in scripts.items():
            print(f"  {name:<{width}}  {_first_doc_line(script)}")
        return EXIT_OK
    script = scripts.get(args.name.removeprefix("bench_").removesuffix(".py"))
    if script is None:
        raise BadInput(f"no benchmark named {args.name!r}; accepted: {', '.join(scripts)}")
    # the script's own arguments pass through; its exit code is ours
    return subprocess.call([sys.executable, str(script), *args.args])


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


def _add_pacing(p: argparse.ArgumentParser, default_realtime: bool) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--realtime", dest="realtime", action="store_true", default=default_realtime,
                       help="pace like a live stream" + (" (default)" if default_realtime else ""))
    group.add_argument("--fast", dest="realtime", action="store_false",
                       help="as fast as possible" + ("" if default_realtime else " (default)"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avatar-nb", description=__doc__.split("\n\n")[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", parents=[common], help="animate audio files (WAV of any rate/channels, or raw s16le)")
    run.add_argument("audio", nargs="+", help="files, folders or glob patterns")
    run.add_argument("--out", required=True, help="output folder for .npz, .png and summary.csv")
    run.add_argument("--raw-rate", type=_positive_int, default=None, help="sample rate of raw .pcm/.raw/.s16le input")
    run.add_argument("--sample-rate", type=_sample_rate, default=16000, help="session sample rate (default 16000)")
    run.add_argument("--chunk-ms", type=_positive_float, default=40.0, help="audio chunk length (default 40)")
    run.add_argument("--concurrency", type=_positive_int, default=4, help="sessions at once (default 4)")
    run.add_argument("--timeout", type=_positive_float, default=None, help="seconds to wait for each clip's end frame")
    run.add_argument("--json", action="store_true", help="one JSON object per clip on stdout")
    run.add_argument("--no-plot", action="store_true", help="skip the .png figures")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_pacing(run, default_realtime=True)
    for flag, help_text in (
        ("--console-url", "console endpoint URL of a remote service"),
        ("--ingress-url", "ingress endpoint URL of a remote service"),
        ("--api-key", "API key (never printed)"),
        ("--app-id", "application id"),
        ("--avatar-id", "avatar id"),
    ):
        run.add_argument(flag, default=None, help=help_text)
    run.set_defaults(func=_cmd_run)

    demo = sub.add_parser("demo", parents=[common], help="animate a generated speech-like clip with the embedded service")
    demo.add_argument("--out", default="avatar_nb_out/demo", help="output folder (default avatar_nb_out/demo)")
    demo.add_argument("--seconds", type=_positive_float, default=5.0, help="clip length (default 5)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the generated clip")
    demo.add_argument("--chunk-ms", type=_positive_float, default=40.0, help="audio chunk length (default 40)")
    _add_pacing(demo, default_realtime=True)
    demo.set_defaults(func=_cmd_demo)

    serve = sub.add_parser("serve", parents=[common], help="run the local avatar service until Ctrl-C")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_port, default=8765, help="0 picks a free port (default 8765)")
    serve.add_argument("--fps", type=_positive_float, default=25.0)
    serve.add_argument("--latency-ms", type=float, default=80.0)
    serve.add_argument("--jitter-ms", type=float, default=0.0)
    serve.add_argument("--expression-dims", type=int, default=50)
    serve.add_argument("--api-key", default=None, help="use this API key instead of a generated one")
    serve.add_argument("--app-id", default=None)
    serve.add_argument("--avatar-id", default=None)
    _add_pacing(serve, default_realtime=True)
    serve.set_defaults(func=_cmd_serve)

    bench = sub.add_parser("bench", parents=[common], help="list or run the benchmark scripts of a source checkout")
    bench.add_argument("name", nargs="?", default=None, help="benchmark to run (without it: list them)")
    bench.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the benchmark script")
    bench.add_argument("--dir", default=None, help="benchmarks folder (default: ./benchmarks or the checkout's)")
    bench.set_defaults(func=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.debug:
        os.environ["AVATAR_NB_DEBUG"] = "1"
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
