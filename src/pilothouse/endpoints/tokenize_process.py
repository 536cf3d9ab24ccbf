"""The tokenizer process of ``gateway.tokenize: process``, and the gateway's side of it.

A worker *thread* shares the GIL with the event loop: its Python parts (chat template,
segment lists, key chaining) and a thread pool's own pickling threads take the GIL from the
loop, and every system call the loop makes gives it back to them (the convoy effect: a loop
step of 0.7 ms of CPU measured 4-6 ms of wall time). So this process has no thread of its
own in the gateway at all: the gateway writes length-prefixed pickles to the child's stdin
and reads the answers from its stdout, both on the event loop (asyncio subprocess pipes);
the child answers in order, one request at a time.

Wire format, both ways: a 4-byte little-endian length, then a pickle. The first frame to
the child is ``(renderer, max_segment_tokens)``; then each request is ``(request, engines,
sizes, root)`` and each answer ``(found, keys, segment_hits, segment_misses)`` or
``("error", text)``. Only the gateway writes to the child, from a process it started with
pickles it made: pickle is safe here because nothing else can speak on these pipes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import struct
import sys
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

from pilothouse.errors import EngineError

if TYPE_CHECKING:
    from pilothouse.endpoints.prompt_tokens import PromptRenderer, Tokens
    from pilothouse.scheduling.types import BlockKeysId, SchedulingRequest

log = logging.getLogger("pilothouse.tokenize")

_HEADER = struct.Struct("<I")
_MAX_FRAME = 1 << 30

Answer = tuple[dict[str, "Tokens"], dict["BlockKeysId", "Tokens"], int, int]


class TokenizerProcess:
    """The child process, started on first use (or by :meth:`start`) and again after it died."""

    def __init__(self, renderer: PromptRenderer, max_segment_tokens: int) -> None:
        self._setup = pickle.dumps((renderer, max_segment_tokens), pickle.HIGHEST_PROTOCOL)
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._waiting: deque[asyncio.Future[Answer]] = deque()
        self._starting = asyncio.Lock()

    async def start(self) -> None:
        async with self._starting:
            if self._proc is not None and self._proc.returncode is None:
                return
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", __name__,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            assert proc.stdin is not None
            assert proc.stdout is not None
            proc.stdin.write(_HEADER.pack(len(self._setup)) + self._setup)
            self._proc = proc
            self._reader = asyncio.create_task(self._read(proc), name="tokenizer-process")

    async def call(
        self, request: SchedulingRequest, engines: Sequence[str], sizes: Sequence[int], root: int
    ) -> Answer:
        """The prompt's ids and block keys, computed in the child. Raises
        :class:`EngineError` when the child died before answering."""
        if self._proc is None or self._proc.returncode is not None or self._reader is None:
            await self.start()
        proc = self._proc
        assert proc is not None
        assert proc.stdin is not None
        frame = pickle.dumps((request, engines, sizes, root), pickle.HIGHEST_PROTOCOL)
        answer: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting.append(answer)
        proc.stdin.write(_HEADER.pack(len(frame)) + frame)
        return await answer

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """Stop the child (at end of its input, killed if it lingers) and fail what waits."""
        proc, self._proc = self._proc, None
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        if proc is not None:
            assert proc.stdin is not None
            proc.stdin.close()
            try:
                async with asyncio.timeout(timeout_s):
                    await proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        self._fail("the tokenizer process was stopped")

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        try:
            while True:
                (size,) = _HEADER.unpack(await proc.stdout.readexactly(_HEADER.size))
                answer = pickle.loads(await proc.stdout.readexactly(size))
                waiter = self._waiting.popleft()
                if waiter.done():
                    continue
                if answer[0] == "error":
                    waiter.set_exception(EngineError(f"tokenizer process: {answer[1]}"))
                else:
                    waiter.set_result(answer)
        except (asyncio.IncompleteReadError, ConnectionError):
            code = await proc.wait()
            log.error("the tokenizer process exited with %s; restarting on next use", code)
            self._fail(f"the tokenizer process exited with {code}")

    def _fail(self, why: str) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_exception(EngineError(why))


# -- the child ---------------------------------------------------------------------------------


def _read_frame(stream: BinaryIO) -> Any | None:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    if size > _MAX_FRAME:
        raise ValueError(f"a frame of {size} bytes")
    body = stream.read(size)
    if len(body) < size:
        return None
    return pickle.loads(body)


def _write_frame(stream: BinaryIO, value: object) -> None:
    data = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def main() -> None:
    """Serve requests from stdin until it closes (the gateway stopped or died)."""
    from pilothouse.endpoints.prompt_tokens import PromptTokenizerProducer, fixed_engines

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # anything printed must not corrupt the answers
    setup = _read_frame(stdin)
    if setup is None:
        return
    renderer, max_segment_tokens = setup
    producer = PromptTokenizerProducer(
        renderer, fixed_engines(()), max_segment_tokens=max_segment_tokens
    )
    while (frame := _read_frame(stdin)) is not None:
        request, engines, sizes, root = frame
        before = producer.stats()
        try:
            found, keys = producer.tokens_and_keys(request, engines, sizes, root)
        except Exception as exc:  # answered, so that the gateway routes by history
            _write_frame(stdout, ("error", f"{type(exc).__name__}: {exc}"))
            continue
        after = producer.stats()
        hits = after.segment_hits - before.segment_hits
        _write_frame(stdout, (found, keys, hits, after.segment_misses - before.segment_misses))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        main()
