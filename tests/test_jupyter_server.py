"""The Jupyter server extension: kernel websockets switch Nagle's algorithm off."""

from __future__ import annotations

import asyncio
import importlib
import json
from pathlib import Path

from jupyter_server.services.kernels import websocket

from avatar_nb import jupyter_server as extension

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "jupyter-config" / "jupyter_server_config.d" / "avatar_nb.json"


def test_the_config_enables_a_module_that_is_an_extension():
    enabled = json.loads(CONFIG.read_text())["ServerApp"]["jpserver_extensions"]
    assert enabled == {"avatar_nb.jupyter_server": True}
    module = importlib.import_module(next(iter(enabled)))
    points = module._jupyter_server_extension_points()
    assert [importlib.import_module(p["module"]) for p in points] == [module]
    assert callable(module._load_jupyter_server_extension)
    # a wheel installs it where Jupyter servers read their configuration
    assert "etc/jupyter/jupyter_server_config.d" in (ROOT / "setup.py").read_text()


def test_opening_a_kernel_websocket_sets_nodelay_first_and_once():
    calls = []

    class Handler(websocket.KernelWebsocketHandler):
        async def open(self, kernel_id):
            calls.append(("open", kernel_id))

        def set_nodelay(self, value):
            calls.append(("nodelay", value))

    assert extension.nodelay_kernel_websockets(Handler)
    assert not extension.nodelay_kernel_websockets(Handler)  # a second load changes nothing
    handler = object.__new__(Handler)
    asyncio.run(Handler.open(handler, "k1"))
    assert calls == [("nodelay", True), ("open", "k1")]


def test_a_handler_that_cannot_set_nodelay_still_opens():
    opened = []

    class Handler(websocket.KernelWebsocketHandler):
        async def open(self, kernel_id):
            opened.append(kernel_id)

        def set_nodelay(self, value):
            raise AttributeError("'NoneType' object has no attribute 'set_nodelay'")  # no stream yet

    extension.nodelay_kernel_websockets(Handler)
    asyncio.run(Handler.open(object.__new__(Handler), "k2"))
    assert opened == ["k2"]


def test_loading_the_extension_wraps_jupyter_servers_own_handler(monkeypatch):
    cls = websocket.KernelWebsocketHandler
    monkeypatch.setattr(cls, "open", cls.open)  # restored after the test
    original = cls.open
    logged = []

    class App:
        class log:
            info = staticmethod(logged.append)

    extension._load_jupyter_server_extension(App())
    assert cls.open is not original and cls.open.__wrapped__ is original
    assert logged and "TCP_NODELAY" in logged[0]
    extension._load_jupyter_server_extension(App())
    assert cls.open.__wrapped__ is original and len(logged) == 1
