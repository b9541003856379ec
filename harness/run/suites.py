"""Suites: grids of cells declared in TOML files (``harness/run/suites/NAME.toml`` or a path).

A suite file has optional ``[settings]`` (run settings, see ``RunSettings``) and one
section per device kind, ``[cpu]`` and ``[cuda]``, each with defaults for the cell fields
and a list of ``[[cpu.grid]]`` / ``[[cuda.grid]]`` tables. Each grid is the cross product
of its list-valued fields; the suite's cells are the union of its grids. The section
used is the run's device kind, so one suite gives a fair picture on a laptop CPU and a
longer one on a GPU. Command-line options replace a field in every grid; ``--arch`` and
``--workload`` first narrow the grids to those that mention them (see ``_select_grids``).
"""

from __future__ import annotations

import itertools
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import architectures
import workloads
from harness.errors import UsageError, choice, os_errors_as_usage
from harness.run.settings import RunSettings
from harness.store.records import Cell

DTYPES = ("float32", "float64", "bfloat16", "float16")
CELL_FIELDS = ("arch", "workload", "seq_len", "batch", "preset", "dtype", "compile")
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")
TOP_LEVEL = ("name", "description", "baseline", "settings", "report", "cpu", "cuda")


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    settings: RunSettings
    sections: dict[str, dict[str, Any]]  # device kind → {"defaults": {...}, "grid": [...]}
    source: str
    baseline: str | None = None  # the architecture speedups are relative to
    report: dict[str, Any] = field(default_factory=dict)  # [report]: e.g. the paper preset's

    def cells(self, device: str, only: dict[str, list[Any]] | None = None,
              overrides: dict[str, Any] | None = None) -> list[Cell]:
        """The suite's cells on ``device``; ``only`` replaces grid fields, ``overrides``
        adds adapter configuration (``--set``)."""
        kind = "cuda" if device.startswith("cuda") else "cpu"
        section = self.sections.get(kind) or self.sections.get("cpu")
        if not section:
            raise UsageError(f"suite {self.name!r} declares no [{kind}] section")
        if not isinstance(section, dict):
            raise UsageError(f"{self.source}: [{kind}] must be a table of cell fields and "
                             f"[[{kind}.grid]] tables, got {section!r}")
        defaults = {k: v for k, v in section.items() if k != "grid"}
        grid_list = section.get("grid") or [{}]
        if not isinstance(grid_list, list) or not all(isinstance(g, dict) for g in grid_list):
            raise UsageError(f"{self.source}: {kind}.grid must be a list of [[{kind}.grid]] "
                             f"tables, got {grid_list!r}")
        grids = _select_grids(grid_list, defaults, only or {})
        out: list[Cell] = []
        seen: set[str] = set()
        for grid in grids:
            spec = {**defaults, **grid, **(only or {})}
            own_sets = spec.pop("set", {})
            if not isinstance(own_sets, dict):
                raise UsageError(f"{self.source}: set must be a table of key = value "
                                 f"(e.g. set = {{order = 256}}), got {own_sets!r}")
            sweep = spec.pop("sweep", {})
            if not isinstance(sweep, dict) or not all(
                    isinstance(v, list) and v for v in sweep.values()):
                raise UsageError(f"{self.source}: sweep must be a table of key = [values] "
                                 f"(e.g. sweep = {{seed = [0, 1, 2]}}), got {sweep!r}")
            sets = {**own_sets, **(overrides or {})}
            for key, value in {**sets, **sweep}.items():
                check_finite(key, value, self.source if key not in (overrides or {}) else "--set")
            unknown = set(spec) - set(CELL_FIELDS)
            if unknown:
                raise UsageError(
                    f"{self.source}: unknown grid field(s) {sorted(unknown)}; "
                    f"valid choices: {', '.join(CELL_FIELDS + ('set', 'sweep'))}"
                )
            missing = [f for f in ("arch", "workload", "seq_len", "batch") if f not in spec]
            if missing:
                raise UsageError(f"{self.source}: a [{kind}] grid lacks {', '.join(missing)}")
            lists = {k: v if isinstance(v, list) else [v] for k, v in spec.items()}
            keys = list(lists)
            swept = [dict(zip(sweep, vs, strict=True)) for vs in itertools.product(*sweep.values())]
            for values in itertools.product(*(lists[k] for k in keys)):
                kw = dict(zip(keys, values, strict=True))
                if kw["arch"] not in architectures.available():
                    raise choice("architecture", kw["arch"], architectures.available())
                accepted = cell_keys(kw["arch"], kw["workload"])
                refused = sorted(set(sweep) - set(accepted))
                if refused:
                    raise UsageError(
                        f"{self.source}: sweep key(s) {refused} do not apply to {kw['arch']} "
                        f"on {kw['workload']}; valid choices: {', '.join(accepted)}")
                for point in swept:  # a sweep's values stay in the cell's overrides (its key)
                    chosen = {**own_sets, **point, **(overrides or {})}  # --set wins
                    own = {k: v for k, v in chosen.items() if k in accepted}
                    cell = Cell.make(overrides=own, device=device, **kw)
                    if cell.cell_id not in seen:
                        seen.add(cell.cell_id)
                        out.append(cell)
        for cell in out:
            validate_cell(cell)
        used = {k for c in out for k, _ in c.overrides}
        unused = sorted(set(overrides or {}) - used)
        if unused:
            archs = sorted({c.arch for c in out})
            valid = sorted({k for c in out for k in cell_keys(c.arch, c.workload)})
            raise UsageError(
                f"--set key(s) {unused} apply to none of the architectures {archs}; valid "
                f"choices: {', '.join(valid)}"
            )
        return out


def check_finite(key: str, value: Any, where: str) -> None:
    """A configuration value with a NaN or infinity in it can be neither measured honestly
    nor stored (records are strict JSON): a usage error before anything runs."""
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"{where}: {key} = {value!r} is not a finite number")
    if isinstance(value, list):
        for v in value:
            check_finite(key, v, where)
    if isinstance(value, dict):
        for k, v in value.items():
            check_finite(f"{key}.{k}", v, where)


def _select_grids(grids: list[dict], defaults: dict, only: dict[str, list]) -> list[dict]:
    """``--arch`` / ``--workload`` first select the grids that mention them, then replace
    the field: ``--workload train`` takes the training grids of a suite, instead of also
    turning its streaming grid (batch 1) into training cells. A value no grid mentions
    keeps every grid, so any architecture or workload can still be asked for."""
    for key in ("arch", "workload"):
        if key not in only:
            continue

        def mentions(g: dict, key: str = key) -> bool:
            v = g.get(key, defaults.get(key, []))
            return bool(set(v if isinstance(v, list) else [v]) & set(only[key]))

        chosen = [g for g in grids if mentions(g)]
        grids = chosen or grids
    return grids


def cell_keys(arch: str, workload: str) -> tuple[str, ...]:
    """Override keys a cell accepts: its adapter's configuration and its workload's options
    (task workloads: lr, max_steps, max_wall_s, target, data, ...)."""
    own = workloads.option_keys(workload) if workload in workloads.available() else ()
    return architectures.spec(arch).config_keys + own


def suite_names() -> list[str]:
    root = resources.files("harness.run").joinpath("suites")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def load_suite(name_or_path: str) -> Suite:
    """A suite by name (``bench``) or by path to a TOML file."""
    path = Path(name_or_path)
    if name_or_path.endswith(".toml") or path.exists():
        if path.is_dir():
            raise UsageError(f"suite {name_or_path!r} is a directory; give a suite name "
                             f"({', '.join(suite_names())}) or a .toml file")
        if not path.is_file():
            raise UsageError(f"suite file {name_or_path!r} does not exist")
        with os_errors_as_usage(f"read suite file {name_or_path!r}"):
            text = path.read_text()
        source = str(path)
    else:
        if name_or_path not in suite_names():
            raise choice("suite", name_or_path, suite_names())
        text = resources.files("harness.run").joinpath("suites", f"{name_or_path}.toml").read_text()
        source = f"suite {name_or_path!r}"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{source} is not valid TOML: {exc}") from None
    settings = RunSettings.from_dict(data.get("settings", {}), source)
    for key in ("name", "description"):
        if not isinstance(data.get(key, ""), str):
            raise UsageError(f"{source}: {key} must be a string, got {data[key]!r}")
    sections = {k: data[k] for k in ("cpu", "cuda") if k in data}
    unknown = set(data) - set(TOP_LEVEL)
    if unknown:
        raise UsageError(
            f"{source}: unknown top-level key(s) {sorted(unknown)}; "
            f"valid choices: {', '.join(TOP_LEVEL)}"
        )
    baseline = data.get("baseline")
    if baseline is not None and not isinstance(baseline, str):
        raise UsageError(f"{source}: baseline must be an architecture name, got {baseline!r}")
    report = data.get("report", {})
    if not isinstance(report, dict) or not all(
            isinstance(v, list) and all(isinstance(x, str) for x in v)
            for k, v in report.items() if k != "lm"):
        raise UsageError(f"{source}: [report] must map keys to lists of names, got {report!r}")
    if "crossover_pairs" in report:  # extra crossover pairs of the report, "a:b"
        from harness.report.crossover import parse_pairs

        for pair in parse_pairs(report["crossover_pairs"], source):
            for arch in pair:
                if arch not in architectures.available():
                    raise choice("architecture", arch, architectures.available())
    if "lm" in report:  # the language-modelling comparison's roles, checked before any cell
        from harness.report.lm_paper import parse_roles

        for role in parse_roles(report["lm"], source).values():
            if role.arch not in architectures.available():
                raise choice("architecture", role.arch, architectures.available())
    return Suite(
        name=data.get("name", path.stem),
        description=data.get("description", ""),
        settings=settings,
        sections=sections,
        source=source,
        baseline=baseline,
        report=report,
    )


def validate_cell(cell: Cell) -> None:
    """Raise UsageError naming the first bad field of ``cell``."""
    if cell.arch not in architectures.available():
        raise choice("architecture", cell.arch, architectures.available())
    if cell.workload not in workloads.available():
        raise choice("workload", cell.workload, workloads.available())
    for name in ("seq_len", "batch"):
        v = getattr(cell, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise UsageError(f"{name} must be a positive integer, got {v!r}")
    if cell.dtype not in DTYPES:
        raise choice("dtype", cell.dtype, DTYPES)
    if cell.compile not in COMPILE_MODES:
        raise choice("compile mode", cell.compile, COMPILE_MODES)
    try:
        architectures.preset_config(cell.arch, cell.preset)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    keys = cell_keys(cell.arch, cell.workload)
    for key, _ in cell.overrides:
        if key not in keys:
            raise UsageError(
                f"unknown configuration key {key!r} for {cell.arch!r} (from --set); "
                f"valid choices: {', '.join(keys)}"
            )
    try:  # a task checks its options and data files before anything runs
        workloads.check(cell.workload, seq_len=cell.seq_len, batch=cell.batch,
                        options=dict(cell.overrides))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
