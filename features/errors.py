"""The errors a user can fix: one root, so the CLI catches exactly these and lets bugs surface."""

from __future__ import annotations


class InMarketError(Exception):
    """An input, file or setting the user can correct; the message says what to change."""


class ContractError(InMarketError, ValueError):
    """The input tables cannot be used as a whole (a missing table, column or wrong file)."""


class ConfigError(InMarketError, ValueError):
    """A configuration file, mapping file or flag that cannot be used."""
