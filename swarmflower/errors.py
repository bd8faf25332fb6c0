"""Typed exceptions in one place, so the CLI can turn them into one-line errors."""

from __future__ import annotations


class SwarmflowerError(Exception):
    """Base class for errors caused by the user's input, not by a bug."""


class DataError(SwarmflowerError):
    """A dataset or table cannot be used as asked (missing file, column, bad target)."""


class ConfigError(SwarmflowerError):
    """A task name, option or configuration value is not valid."""
