"""Everything one simulator server holds, built from :class:`SimSettings`."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from pilothouse.engines.tokenizer import DummyTokenizer, filler_seed, natural_length
from pilothouse.errors import BadRequest, ModelNotFound
from pilothouse.servers.sim.faults import FaultInjector
from pilothouse.servers.sim.kv_publisher import KVEventPublisher
from pilothouse.servers.sim.metrics import SimMetrics
from pilothouse.servers.sim.protocol import CompletionCall
from pilothouse.servers.sim.runtime import EngineRuntime
from pilothouse.servers.sim.scripted import ScriptedOutput
from pilothouse.servers.sim.settings import SimSettings, lora_module_name, lora_module_path
from pilothouse.sim.engine_model import EngineModel
from pilothouse.sim.hashing import chain_block_hashes
from pilothouse.sim.types import EngineRequest

CRASH_EXIT_STATUS = 1


def exit_process() -> None:
    """What ``--crash-after`` does in a real process: exit at once, no cleanup."""
    os._exit(CRASH_EXIT_STATUS)


@dataclass(slots=True)
class SimState:
    """The server's objects; built eagerly, started in the app's startup hook."""

    settings: SimSettings
    model: EngineModel
    metrics: SimMetrics
    runtime: EngineRuntime
    tokenizer: DummyTokenizer = field(default_factory=DummyTokenizer)
    on_crash: Callable[[], None] = exit_process
    faults: FaultInjector | None = None
    publisher: KVEventPublisher | None = None
    release_hung: asyncio.Event = field(default_factory=asyncio.Event)
    adapters: dict[str, str] = field(default_factory=dict)
    """Served LoRA adapters, name → path: ``--lora-modules`` plus runtime loads."""

    @classmethod
    def build(cls, settings: SimSettings, on_crash: Callable[[], None] | None) -> SimState:
        config = settings.engine_config()
        model = EngineModel(config, seed=settings.seed)
        metrics = SimMetrics(model, settings.model)
        lora_ids = {name: index + 1 for index, name in enumerate(settings.lora_names)}
        runtime = EngineRuntime(model, metrics, time_scale=settings.time_scale, lora_ids=lora_ids)
        adapters = {lora_module_name(m): lora_module_path(m) for m in settings.lora_modules}
        return cls(
            settings, model, metrics, runtime, on_crash=on_crash or exit_process, adapters=adapters
        )

    @property
    def loras(self) -> frozenset[str]:
        return frozenset(self.adapters)

    def load_adapter(self, name: object, path: object) -> str:
        """vLLM's ``/v1/load_lora_adapter``: serve ``name`` from now on (400 on bad input)."""
        if not isinstance(name, str) or not isinstance(path, str) or not name or not path:
            raise BadRequest(
                "Both 'lora_name' and 'lora_path' must be provided.", code="InvalidUserInput"
            )
        if name in self.adapters:
            raise BadRequest(
                f"The lora adapter '{name}' has already been loaded.", code="InvalidUserInput"
            )
        if name == self.settings.model:
            raise BadRequest(f"'{name}' is the base model's name.", code="InvalidUserInput")
        self.adapters[name] = path
        self.runtime.register_lora(name)
        return f"Success: LoRA adapter '{name}' added successfully."

    def unload_adapter(self, name: object) -> str:
        """vLLM's ``/v1/unload_lora_adapter``: stop serving ``name`` (404 when unknown).

        Requests already running on it finish; its slot frees as in vLLM, once idle.
        """
        if not isinstance(name, str) or not name:
            raise BadRequest(
                "'lora_name' needs to be provided to unload a LoRA adapter.",
                code="InvalidUserInput",
            )
        if self.adapters.pop(name, None) is None:
            raise ModelNotFound(f"The lora adapter '{name}' cannot be found.", code="NotFoundError")
        return f"Success: LoRA adapter '{name}' removed successfully."

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.faults = FaultInjector(self.settings.faults, self.settings.seed, loop.time())
        self.runtime.start()

    def ready(self) -> bool:
        return self.faults is not None and self.faults.ready(asyncio.get_running_loop().time())

    def start_kv_events(self, http_port: int) -> None:
        """Bind the ZMQ sockets (once the HTTP port, part of the default topic, is known)."""
        kv = self.settings.kv_events
        if not kv.enabled or self.publisher is not None:
            return
        assert kv.port is not None
        self.publisher = KVEventPublisher(
            self.settings.host,
            kv.port,
            kv.replay_port,
            self.settings.kv_topic(http_port),
            layout=kv.encoding,
            buffer_steps=kv.buffer_steps,
        )
        self.publisher.start()
        self.runtime.publisher = self.publisher

    async def stop(self) -> None:
        self.release_hung.set()
        await self.runtime.stop()
        if self.publisher is not None:
            await self.publisher.close()
            self.publisher = None

    def schedule_crash(self) -> None:
        """Crash shortly after the current response has been written."""
        asyncio.get_running_loop().call_later(0.05, self.on_crash)

    def scripted(self, call: CompletionCall) -> ScriptedOutput | None:
        """The script's answer to a chat ``call``, or ``None``: generate filler text."""
        script, conversation = self.settings.script, call.conversation
        if script is None or conversation is None:
            return None
        reply = script.reply_for(conversation)
        return None if reply is None else ScriptedOutput.build(reply, conversation, self.tokenizer)

    def engine_request(
        self, call: CompletionCall, request_id: str, scripted_tokens: int | None = None
    ) -> tuple[EngineRequest, int]:
        """The engine's view of ``call`` and the start of its filler answer.

        ``scripted_tokens``: the answer is a scripted reply of that many tokens; the engine
        stops there (``stop``) unless ``max_tokens`` or the context cuts it (``length``).
        """
        config = self.model.config
        prompt = len(call.prompt_ids)
        room = config.max_model_len - prompt
        start = filler_seed(call.prompt_ids, self.settings.seed)
        stop_after: int | None = None
        if call.max_tokens is not None:
            max_tokens = call.max_tokens
            stop_after = scripted_tokens
        elif scripted_tokens is not None:
            max_tokens, stop_after = room, scripted_tokens
        elif self.settings.default_max_tokens is not None:
            max_tokens = min(self.settings.default_max_tokens, room)
        else:
            max_tokens, stop_after = room, natural_length(start)
        if max_tokens < 1 or prompt + max_tokens > config.max_model_len:
            raise BadRequest(
                f"This model's maximum context length is {config.max_model_len} tokens. "
                f"However, you requested {prompt + max(max_tokens, 1)} tokens ({prompt} in the "
                f"prompt, {max(max_tokens, 1)} in the completion). Please reduce the length "
                "of the prompt or completion.",
                param="max_tokens",
            )
        hashes = chain_block_hashes(call.prompt_ids, config.block_size, extra=call.lora)
        request = EngineRequest(
            request_id=request_id,
            prompt_tokens=prompt,
            max_tokens=max_tokens,
            block_hashes=hashes,
            token_ids=call.prompt_ids,
            lora=call.lora,
            stop_after=stop_after,
        )
        return request, start
