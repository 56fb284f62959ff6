"""``avatar-nb tap``: the recording proxy from the command line."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_tap_parser"]


def add_tap_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    tap = sub.add_parser(
        "tap", parents=[common],
        help="record every session between a client and an avatar service (a proxy; one capture file per session)",
    )
    tap.add_argument("--listen", default="127.0.0.1:8766", help="HOST:PORT to listen on (default 127.0.0.1:8766)")
    tap.add_argument("--upstream-console", required=True, help="the service's console URL, e.g. https://host/v1/console")
    tap.add_argument("--upstream-ingress", required=True, help="the service's ingress URL, e.g. https://host/v2/driveningress")
    tap.add_argument("--out", required=True, help="folder for the capture files")
    tap.add_argument("--io-timeout", type=float, default=10.0, help="seconds for any send, connect or close (default 10)")
    tap.add_argument("--idle-timeout", type=float, default=900.0,
                     help="close a session without any message for this long (default 900 s)")
    tap.set_defaults(func=_cmd_tap)


def _cmd_tap(args: argparse.Namespace) -> int:
    from ..experiments.clips import BadInput
    from .proxy import run_tap

    def ready(proxy: Any) -> None:
        print(f"avatar_nb tap listening on {proxy.base_url}, recording into {proxy.out}", flush=True)
        print(f"  console_endpoint_url = {proxy.console_url}  ->  {proxy.upstream_console}")
        print(f"  ingress_endpoint_url = {proxy.ingress_url}  ->  {proxy.upstream_ingress}")
        print("point a client at these two URLs; press Ctrl-C to stop", flush=True)

    try:
        proxy = run_tap(args.listen, args.upstream_console, args.upstream_ingress, args.out, ready=ready,
                        io_timeout=args.io_timeout, idle_timeout=args.idle_timeout)
    except ValueError as exc:
        raise BadInput(str(exc)) from exc
    except OSError as exc:
        raise BadInput(f"cannot listen on {args.listen}: {exc.strerror or exc}") from exc
    # Ctrl-C is how the tap ends (as for serve): exit 0, with what it left behind in one line
    print(f"avatar-nb tap: {_stopped_line(proxy)}", file=sys.stderr, flush=True)
    return 0


def _stopped_line(proxy: Any) -> str:
    """What a stopped tap recorded, in one line: the captures and the sessions the stop cut short."""
    n = len(proxy.captures)
    text = f"stopped; {n} capture{'' if n == 1 else 's'} in {proxy.out}"
    cut = [path.name for path in proxy.cut_short]
    if cut:
        names = ", ".join(cut[:3]) + (f" and {len(cut) - 3} more" if len(cut) > 3 else "")
        were = "was" if len(cut) == 1 else "were"
        text += f" ({len(cut)} {were} recording and ended with the stop, finished whole: {names})"
    return text
