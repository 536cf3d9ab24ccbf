"""Pickers: turn weighted scores into targets in preference order."""
