"""Argument parsing the commands share: comma-separated lists, bounded integers, run
directories and ``--set key=value``."""

from __future__ import annotations

import argparse
import os
import tomllib
from typing import Any

from harness.errors import UsageError


def csv_list(kind: type) -> Any:
    """An argparse ``type``: a comma-separated list of ``kind`` (str, or positive int)."""

    def parse(text: str) -> list:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"empty list {text!r}")
        if kind is int:
            out = []
            for t in items:
                try:
                    v = int(t)
                except ValueError:
                    raise argparse.ArgumentTypeError(
                        f"{t!r} is not an integer (expected positive integers like 256,1024)"
                    ) from None
                if v < 1:
                    raise argparse.ArgumentTypeError(f"must be a positive integer, got {v}")
                out.append(v)
            return out
        return items

    return parse


def int_at_least(low: int) -> Any:
    """An argparse ``type``: an integer ``>= low`` (plain ``int`` lets ``--top -1`` through)."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {v}")
        return v

    return parse


def check_run_dirs(paths: list[str]) -> None:
    """A file given as a run directory is named as such: the store only sees that no
    directory is there and would say it "does not exist"."""
    for p in paths:
        if os.path.exists(p) and not os.path.isdir(p):
            raise UsageError(f"{p!r} is a file, not a run directory")


def parse_set(items: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; values are read as TOML literals (ints, floats, booleans),
    otherwise kept as strings. NaN and infinities are refused (see ``check_finite``)."""
    from harness.run.suites import check_finite

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set expects key=value, got {item!r}")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        check_finite(key.strip(), value, "--set")
        out[key.strip()] = value
    return out
