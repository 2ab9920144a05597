"""Options declared once: each field of a configuration dataclass carries its help, command-line flag, text parser
and check, and everything else (the argparse parser, validation, config.json handling) is derived from it.

Contract: `option(default, help, ...)` returns a `dataclasses.field` whose metadata holds an `Option`;
`declarations(cls)` lists them in field order. A check is `check(subject, value)`: it raises `ValueError` whose
message starts with `subject` (the field's name in a config, the typed text on the command line) and shows the
offending value. A text parser turns one command-line argument into a value, raising
`argparse.ArgumentTypeError` with a one-line message (so it also serves as an argparse `type` on its own).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import re
import typing
from dataclasses import dataclass
from typing import Any, Callable, Optional

Check = Callable[[str, Any], None]
KEY = "option"  # the metadata key of a declared field


@dataclass(frozen=True)
class Option:
    """How a config field appears on the command line and what values it accepts."""

    help: str  # argparse help text (%% for a literal %); the default is appended by the CLI's formatter
    group: str  # the --help section
    flag: Optional[str] = None  # None: --name-with-dashes, or --no-name for a boolean that defaults to True
    metavar: Optional[str] = None
    parse: Optional[Callable[[str], Any]] = None  # command-line text -> value; None: the text itself
    check: Optional[Check] = None  # the field's own check; checks across fields are the config's
    choices: Optional[tuple] = None  # the allowed values (shown by --help, checked by argparse and the config)
    sequence: Optional[str] = None  # a list field, stored as a tuple; the text names it in errors ("a list")
    optional: bool = False  # config.json leaves it out at its default (a field added after results were collected)
    extensible: bool = False  # may differ between invocations sharing an output folder (see CompareConfig.differences)


def option(default: Any, help: str, *, group: str, **declaration: Any) -> Any:
    """A dataclass field with its `Option`; a `choices` tuple also becomes the check."""
    if declaration.get("choices") and "check" not in declaration:
        declaration["check"] = one_of(declaration["choices"])
    return dataclasses.field(default=default, metadata={KEY: Option(help, group, **declaration)})


@dataclass(frozen=True)
class Declared:
    name: str
    default: Any
    option: Option
    none_ok: bool  # the annotation is Optional[...]: None means "not set" and is not checked

    @property
    def flag(self) -> str:
        if self.option.flag:
            return self.option.flag
        prefix = "--no-" if self.default is True else "--"
        return prefix + self.name.replace("_", "-")


@functools.cache
def declarations(cls: type) -> tuple[Declared, ...]:
    """The declared options of dataclass `cls`, in field order (every field must be declared)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if KEY not in f.metadata:
            raise TypeError(f"{cls.__name__}.{f.name} is not declared with option()")
        none_ok = type(None) in typing.get_args(hints[f.name])
        out.append(Declared(f.name, f.default, f.metadata[KEY], none_ok))
    return tuple(out)


def normalize_and_check(obj: Any) -> None:
    """Each declared field of the frozen dataclass `obj` on its own: lists stored as tuples, then the field's check
    (None passes where the annotation allows it)."""
    for d in declarations(type(obj)):
        value = getattr(obj, d.name)
        if value is None and d.none_ok:
            continue
        if d.option.sequence:
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise ValueError(f"{d.name} must be {d.option.sequence}, got {value!r}")
            value = tuple(value)
            object.__setattr__(obj, d.name, value)
        if d.option.check:
            d.option.check(d.name, value)


# ------------------------------------------------------------------------------------------------ checks
def one_of(choices: tuple, *, element: Optional[str] = None) -> Check:
    def check(subject: str, value: Any) -> None:
        if value not in choices:
            raise ValueError(f"{element or subject} must be one of {', '.join(choices)}; got {value!r}")
    return check


def integer(minimum: int, *, element: Optional[str] = None) -> Check:
    def check(subject: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{element or subject} must be an integer >= {minimum}, got {value!r}")
    return check


def number(*, positive: bool = False, minimum: Optional[float] = None, below: Optional[float] = None,
           element: Optional[str] = None) -> Check:
    """A finite number: > 0 if `positive`, >= `minimum`, < `below` (each when given)."""
    def check(subject: str, value: Any) -> None:
        name = element or subject
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok and positive and not value > 0:
            ok = False
        if ok and minimum is not None and value < minimum:
            ok = False
        if not ok:
            what = "a positive number" if positive else f"a number >= {minimum}"
            raise ValueError(f"{name} must be {what}, got {value!r}")
        if below is not None and value >= below:
            raise ValueError(f"{name} must be < {below:g}, got {value!r}")
    return check


def boolean(subject: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{subject} must be true or false, got {value!r}")


def each(check: Check, *, empty_ok: bool = False) -> Check:
    """A list: not empty (unless `empty_ok`), every element valid (`check` names the element), no duplicates."""
    def check_list(subject: str, values: Any) -> None:
        if not values and not empty_ok:
            raise ValueError(f"{subject} must not be empty")
        for v in values:
            check(subject, v)
        if len(set(values)) != len(values):
            raise ValueError(f"{subject} has duplicates: {list(values)}")
    return check_list


# ------------------------------------------------------------------------------------------------ text parsers
def parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def parse_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def parse_list(kind: Callable[[str], Any], what: str) -> Callable[[str], list]:
    """A comma-separated list of `kind` values; `what` is the singular noun for messages ("an integer")."""
    def parse(text: str) -> list:
        items = [t.strip() for t in text.split(",")]
        if any(not t for t in items):
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list (empty item)")
        out = []
        for t in items:
            try:
                out.append(kind(t))
            except ValueError:
                raise argparse.ArgumentTypeError(f"{t!r} in {text!r} is not {what}") from None
        return out

    parse.__name__ = "list"
    return parse


def parse_int_options(text: str) -> dict:
    """`key=value,key=value` with integer values."""
    out = {}
    for item in text.split(","):
        key, eq, value = item.partition("=")
        try:
            if not eq or not key.strip():
                raise ValueError
            out[key.strip()] = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r} in {text!r} is not key=integer") from None
    return out


_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": 2**20, "mb": 2**20, "mib": 2**20,
          "g": 2**30, "gb": 2**30, "gib": 2**30, "t": 2**40, "tb": 2**40, "tib": 2**40}


def parse_bytes(text: str) -> int:
    """A size such as 256MiB, 8GiB, 1.5G or 1000000 (bytes); K/M/G/T are binary (2^10, 2^20, ...) with or
    without iB."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", text)
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _UNITS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 256MiB, 8GiB, or a number of bytes)")
    value = int(float(m.group(1)) * _UNITS[unit])
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1 byte")
    return value
