"""ClientWatch: a client that leaves cancels its request, under either disconnect source.

The gateway's own server hands the request a :class:`DisconnectSignal` in the scope (a
callback, no task); any other ASGI server reports the disconnect through ``receive()``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pilothouse.gateway.asgi import DISCONNECT_EXTENSION, ClientWatch, DisconnectSignal


def _scope(signal: DisconnectSignal | None) -> dict[str, Any]:
    scope: dict[str, Any] = {"type": "http"}
    if signal is not None:
        scope["extensions"] = {DISCONNECT_EXTENSION: signal}
    return scope


class _Client:
    """ASGI receive/send of a client that may hang up."""

    def __init__(self) -> None:
        self.gone = asyncio.Event()
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)


async def _request(
    watch: ClientWatch, finish: asyncio.Event, reply: asyncio.Event | None = None
) -> str:
    """A request that waits for ``finish`` (answering first once ``reply`` is set)."""
    watch.start()
    try:
        if reply is not None:
            await reply.wait()
            await watch.send({"type": "http.response.body", "body": b"done"})
        await finish.wait()
        return "finished"
    except asyncio.CancelledError:
        if not watch.left(asyncio.current_task()):
            raise
        return "client left"
    finally:
        watch.stop()


async def _run(
    signal: DisconnectSignal | None, *, hang_up: bool, before_start: bool = False
) -> tuple[str, ClientWatch]:
    client, finish = _Client(), asyncio.Event()
    watch = ClientWatch(_scope(signal), client.receive, client.send)
    if before_start and signal is not None:
        signal.fire()
    task = asyncio.create_task(_request(watch, finish))
    await asyncio.sleep(0)
    if hang_up:
        if signal is not None:
            signal.fire()
        client.gone.set()
    await asyncio.sleep(0.01)
    finish.set()
    return await task, watch


@pytest.mark.parametrize(
    "with_signal", ["loop", "signal", "receive"], ids=["signal-with-loop", "signal", "receive"]
)
async def test_a_client_that_leaves_cancels_its_request(with_signal: str) -> None:
    loop = asyncio.get_running_loop() if with_signal == "loop" else None
    signal = DisconnectSignal(loop) if with_signal != "receive" else None
    ended, watch = await _run(signal, hang_up=True)
    assert ended == "client left"
    assert watch.gone


@pytest.mark.parametrize("with_signal", [True, False], ids=["signal", "receive"])
async def test_a_client_that_stays_lets_its_request_finish(with_signal: bool) -> None:
    signal = DisconnectSignal() if with_signal else None
    ended, watch = await _run(signal, hang_up=False)
    assert ended == "finished"
    assert not watch.gone


async def test_a_client_gone_before_the_watch_starts_cancels_at_start() -> None:
    ended, _ = await _run(DisconnectSignal(), hang_up=False, before_start=True)
    assert ended == "client left"


async def test_a_disconnect_after_the_answer_is_complete_cancels_nothing() -> None:
    signal, client = DisconnectSignal(), _Client()
    finish, reply = asyncio.Event(), asyncio.Event()
    watch = ClientWatch(_scope(signal), client.receive, client.send)
    task = asyncio.create_task(_request(watch, finish, reply))
    await asyncio.sleep(0)
    reply.set()
    await asyncio.sleep(0.01)  # the answer is sent; the request still runs
    assert watch.complete
    assert not task.done()
    signal.fire()
    await asyncio.sleep(0.01)
    finish.set()
    assert await task == "finished"
    assert not watch.gone


async def test_a_stopped_watch_no_longer_listens() -> None:
    signal = DisconnectSignal()
    _, watch = await _run(signal, hang_up=False)
    assert signal.callback is None
    signal.fire()
    assert not watch.gone
