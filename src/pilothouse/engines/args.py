"""Engine flags from the Fleet's ``args`` mapping, shared by every engine kind."""

from __future__ import annotations

from collections.abc import Mapping

from pilothouse.config.fleet import ArgValue


def engine_args(args: Mapping[str, ArgValue]) -> list[str]:
    """Engine flags from a mapping.

    ``{"max-model-len": 2048, "enforce-eager": True}`` → ``--max-model-len 2048 --enforce-eager``.
    """
    out: list[str] = []
    for key, value in args.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            out.append(flag)
        elif value is not False:
            out += [flag, str(value)]
    return out
