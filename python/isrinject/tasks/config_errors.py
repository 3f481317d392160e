"""Configuration errors in one line: the field, the value given, the values allowed.

pex_config's own `~lsst.pex.config.FieldValidationError` prints the value
with ``str()`` (for a Config that is its whole field dictionary) and "is not a
valid value" for a failed ``check``.  `one_line_error` rewrites such an error
for `isrinject.tasks.visit.VisitInjectConfig`, and names the usual cause of
a Config given as a value: on the ``pipetask`` command line an unquoted
``config`` (``-c inject_visit:scaling_source=config``) is the task's config
object itself, not the string.
"""

from __future__ import annotations

__all__ = ["RENAMED_CHOICES", "ConfigValueError", "allowed_values", "one_line_error", "renamed_choice"]

import warnings
from typing import Any

from lsst.pex.config import ChoiceField, Config, Field, FieldValidationError, ListField

#: Choices renamed for a field: ``{field: {old name: new name}}``.  An old
#: name still works, with a `FutureWarning`.
RENAMED_CHOICES: dict[str, dict[str, str]] = {
    # 'config' read unquoted on the pipetask command line is the Config itself.
    "scaling_source": {"config": "constant"},
}

#: What a field with a ``check`` accepts, for the message (fields not listed
#: get their type).
_CHECKED: dict[str, str] = {
    "injection_core_size": "an odd integer ≥ 1",
    "photometric_scaling": "a finite number > 0 [nJy/e⁻] or None",
    "plausible_mag_range": "two magnitudes [low, high] with low < high",
}

_MAX_SHOWN = 60

_TYPE_WORDS: dict[type, str] = {int: "an integer", float: "a number", str: "a string", bool: "True or False"}


class ConfigValueError(FieldValidationError):
    """A `~lsst.pex.config.FieldValidationError` whose message is one line
    naming the field, the value given and the values allowed.

    Parameters
    ----------
    field
        The field that refused the value.
    config
        The config it belongs to.
    message
        The one-line message.
    """

    def __init__(self, field: Field, config: Config, message: str) -> None:
        super().__init__(field, config, message)
        self.args = (message,)


def _shown(value: Any) -> str:
    """The value as the message quotes it (a Config by its class, long reprs cut)."""
    if isinstance(value, Config):
        return f"the {type(value).__name__} object itself"
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def allowed_values(field: Field) -> str:
    """What ``field`` accepts, in words (its choices, its check, its type)."""
    if isinstance(field, ChoiceField):
        names = [repr(name) for name in field.allowed if name is not None]
        return "one of " + ", ".join(names) + (" or None" if field.optional else "")
    if field.name in _CHECKED:
        return _CHECKED[field.name]
    dtype: Any = field.itemtype if isinstance(field, ListField) else field.dtype
    what: str = _TYPE_WORDS.get(dtype) or str(getattr(dtype, "__name__", dtype))
    if isinstance(field, ListField):
        what = f"a list of {what.removeprefix('a ').removeprefix('an ')}s"
    return what + (" or None" if field.optional else "")


def one_line_error(config: Config, name: str, value: Any) -> ConfigValueError:
    """The `ConfigValueError` for ``value`` refused by ``config``'s field ``name``."""
    field = config._fields[name]
    message = (
        f"{type(config).__name__}.{name}: {_shown(value)} is not allowed; expected {allowed_values(field)}."
    )
    if isinstance(value, Config):
        meant = RENAMED_CHOICES.get(name, {}).get("config")
        message += (
            " (On the pipetask command line an unquoted config is the task's config object, not a string"
            + (f"; the choice 'config' is now {meant!r}: -c LABEL:{name}={meant}" if meant else
               f"; quote string values: -c \"LABEL:{name}='VALUE'\"")
            + ".)"
        )
    return ConfigValueError(field, config, message)


def renamed_choice(name: str, value: Any) -> Any:
    """``value`` with a renamed choice of field ``name`` replaced by its new
    name (with a `FutureWarning`); anything else unchanged."""
    renamed = RENAMED_CHOICES.get(name, {})
    if isinstance(value, str) and value in renamed:
        warnings.warn(
            f"{name}={value!r} is deprecated: use {name}={renamed[value]!r} (same meaning).",
            FutureWarning,
            stacklevel=3,
        )
        return renamed[value]
    return value
