"""``python -m pilothouse.epp``: the endpoint picker without going through ``pilothouse``."""

from pilothouse.epp.cli import epp_command

if __name__ == "__main__":
    epp_command(prog_name="pilothouse epp")
