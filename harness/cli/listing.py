"""``python -m harness list [--json] [--preset NAME]``: the registry as a table or JSON."""

from __future__ import annotations

import argparse
import json
import sys

import architectures
from harness.errors import UsageError


def registry_rows(preset: str = architectures.DEFAULT_PRESET) -> list[dict]:
    """One dict per adapter that has ``preset``: its info plus that preset's parameter count.

    Size presets exist for every adapter; a published model's preset (``paper-psmnist``)
    only for the adapters that express it, so only those are listed."""
    names = [n for n in architectures.available() if preset in architectures.presets(n)]
    if not names:
        valid = sorted({p for n in architectures.available() for p in architectures.presets(n)})
        raise UsageError(f"unknown preset {preset!r}; valid choices: {', '.join(valid)}")
    rows = []
    for name in names:
        row = architectures.info(name).to_dict()
        try:
            row["params"] = architectures.build(name, preset=preset).num_params()
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        row["preset"] = preset
        rows.append(row)
    return rows


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print a JSON list of objects")
    p.add_argument("--preset", default=architectures.DEFAULT_PRESET, help="size preset")


def main(args: argparse.Namespace) -> int:
    rows = registry_rows(args.preset)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    title = (f"seqbench adapters (preset {args.preset!r}, params at input 1 / output 10 "
             "unless the preset sets them)")
    table = Table(title=title)
    table.add_column("name", no_wrap=True, min_width=max(len(r["name"]) for r in rows))
    for col in ("family", "params", "parallel", "step", "time", "memory", "step mem"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["name"], r["family"], f"{r['params']:,}", "yes" if r["parallel_training"] else "no",
            "yes" if r["stepwise"] else "no", r["time_complexity"], r["memory_complexity"],
            r["step_memory"],
        )
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    return 0
