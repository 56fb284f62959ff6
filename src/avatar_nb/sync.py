"""run_sync(): run a coroutine to its end from code with or without a running event loop.

The synchronous spellings (``animate_sync``, ``sweep``) share it; it lived in
:mod:`avatar_nb.pipeline`, which still re-exports it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")

__all__ = ["run_sync"]


def run_sync(
    start: Callable[[], Coroutine[Any, Any, _T]],
    *,
    service: Any,
    name: str,
    async_name: str,
    thread_name: str,
) -> _T:
    """Run the coroutine ``start()`` makes to its end, with or without a running event loop.

    Without one, on a new loop in this thread. With one (a Jupyter kernel) this thread
    blocks while a worker thread (``thread_name``) runs it on a private loop; a running
    ``service`` served by this thread's loop (entered with ``async with``, not started in
    a thread of its own) could then never answer, so that case is a ``RuntimeError``
    telling the caller of ``name()`` to ``await async_name(...)`` instead.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(start())
    if (
        service is not None
        and getattr(service, "running", False)
        and getattr(service, "_thread", None) is None
    ):
        raise RuntimeError(
            f"{name}() would block the event loop that serves this LocalService "
            f"(it was entered with `async with`); use `await {async_name}(...)` instead, "
            "or start the service with service.start()"
        )
    return _in_thread(start, thread_name)


def _in_thread(start: Callable[[], Coroutine[Any, Any, _T]], thread_name: str) -> _T:
    """``start()`` on a private loop in a worker thread; a ``KeyboardInterrupt`` here (a
    kernel interrupt) cancels it there, waits for it to wind down (a sweep commits its
    finished runs), then goes on to the caller."""
    import threading

    ready = threading.Event()
    running: dict[str, Any] = {}

    async def main() -> _T:
        running["loop"], running["task"] = asyncio.get_running_loop(), asyncio.current_task()
        ready.set()
        return await start()

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=thread_name) as pool:
        future = pool.submit(asyncio.run, main())
        try:
            return future.result()
        except KeyboardInterrupt:
            if ready.is_set():
                running["loop"].call_soon_threadsafe(running["task"].cancel)
            try:
                future.exception()  # the wind-down; what it raised is the interrupt's
            except concurrent.futures.CancelledError:
                pass
            raise
