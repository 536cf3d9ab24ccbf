"""``python -m pilothouse.engines.sim``: the same command as ``pilothouse engine sim``."""

from pilothouse.engines.sim.cli import sim_command

if __name__ == "__main__":
    sim_command()
