"""Errors that are the user's to fix: the CLI prints them on one line and exits with code 2."""

from __future__ import annotations

from collections.abc import Iterable


class AutocompressError(Exception):
    """Base class of every error whose message is meant for the user."""


class ConfigError(AutocompressError, ValueError):
    """A recipe, search space, budget or CLI value is invalid."""


class PlanError(AutocompressError, ValueError):
    """A compression plan cannot be applied to the model it was given."""


class ArtifactError(AutocompressError, OSError):
    """A compressed artifact is missing, damaged or of an unknown version."""


def invalid(field: str, value: object, allowed: str | Iterable[object]) -> ConfigError:
    """Build a ConfigError naming the field, the bad value and what is allowed.

    Args:
        field: Dotted path of the offending field, e.g. ``search.sampler``.
        value: The value that was given.
        allowed: A description of the valid values, or an iterable of them.

    Returns:
        The error, for the caller to raise.
    """
    if not isinstance(allowed, str):
        allowed = "one of " + ", ".join(repr(a) for a in allowed)
    return ConfigError(f"{field}: invalid value {shorten(value)}; allowed: {allowed}")


def shorten(value: object, limit: int = 80) -> str:
    """``repr(value)``, cut in the middle when longer than ``limit`` (a 400-digit number)."""
    try:
        text = repr(value)
    except ValueError:  # an int over Python's 4300-digit limit on int -> str
        text = f"<an integer of {getattr(value, 'bit_length', lambda: '?')()} bits>"
    if len(text) <= limit:
        return text
    half = (limit - 5) // 2
    return f"{text[:half]} ... {text[-half:]}"


def unknown_key(field: str, allowed: Iterable[str]) -> ConfigError:
    """Build a ConfigError for an unknown key, suggesting the nearest allowed one.

    Args:
        field: Dotted path of the unknown key, e.g. ``search.trialz``.
        allowed: The keys allowed at that place.

    Returns:
        The error, for the caller to raise.
    """
    import difflib

    allowed = list(allowed)
    near = difflib.get_close_matches(field.rsplit(".", 1)[-1], allowed, n=1)
    hint = f"did you mean {near[0]!r}? " if near else ""
    return ConfigError(f"{field}: unknown key; {hint}allowed keys: {', '.join(allowed)}")
