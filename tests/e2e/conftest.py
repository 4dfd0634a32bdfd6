"""Fixtures shared by end-to-end modules: the station installed as a service (installed.py)."""

from tests.e2e.installed import accounts, program, station

__all__ = ["accounts", "program", "station"]
