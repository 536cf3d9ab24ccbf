"""``python -m pilothouse.servers.sim``: the same command as ``pilothouse engine sim``."""

from pilothouse.servers.sim.cli import sim_command

if __name__ == "__main__":
    sim_command()
