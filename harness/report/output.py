"""Where a report's files go: the directory, file names, and writes that fail as one usage
error (never a traceback) when the disk or a permission refuses."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from harness.errors import UsageError, os_errors_as_usage
from harness.store.load import FACET_KEYS

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class Output:
    """The report directory and how figures are written into it."""

    out: Path
    widths: tuple[str, ...] = ("single", "double")
    formats: tuple[str, ...] = ("pdf", "svg", "png")
    dpi: int = 300

    def rel(self, path: Path) -> str:
        """``path`` as a link from ``index.md``."""
        return path.relative_to(self.out).as_posix()

    def links(self, stem: Path, suffixes: Sequence[str] = ("md", "tex", "csv")) -> str:
        """`` · ``-joined Markdown links to ``stem`` with each suffix."""
        return " · ".join(f"[{s}]({self.rel(stem.with_suffix('.' + s))})" for s in suffixes)

    def figure(self, make: Callable[[str], Figure], name: str, caption: str,
               alt: str) -> list[str]:
        """Draw ``make(width)`` at every width into ``figures/{name}_{width}.*``; the
        ``index.md`` lines: the caption with links, and the PNG (double width) inline."""
        from harness.report.figures import save

        stems: dict[str, Path] = {}
        for w in self.widths:
            fig = make(w)
            stems[w] = self.out / "figures" / f"{name}_{w}"
            with os_errors_as_usage(f"write {str(stems[w])!r}"):
                save(fig, stems[w], self.formats, self.dpi)
        files = " · ".join(
            f"[{w} {fmt}]({self.rel(s.with_suffix('.' + fmt))})"
            for w, s in stems.items()
            for fmt in self.formats
        )
        lines = [f"**{caption}** — {files}", ""]
        if "png" in self.formats:
            show = stems.get("double") or next(iter(stems.values()))
            lines += [f"![{alt}]({self.rel(show.with_suffix('.png'))})", ""]
        return lines


def slug(*parts: object) -> str:
    """File-name-safe, lower case; parts joined by ``_``, within a part ``-``."""
    clean = [
        re.sub(r"[^A-Za-z0-9.+]+", "-", str(p)).strip("-").lower()
        for p in parts
        if p not in ("", None)
    ]
    return "_".join(c for c in clean if c)


def varying(df: pd.DataFrame, keys: tuple[str, ...]) -> list[str]:
    """The ``keys`` that take more than one value in ``df`` (they name files and headings)."""
    return [k for k in keys if k in df.columns and df[k].nunique(dropna=False) > 1]


def describe(key: dict[str, object], varying_keys: list[str]) -> str:
    """``k=v, …`` of a facet's varying keys beyond workload and device (in its heading)."""
    extra = [f"{k}={key[k]}" for k in varying_keys if k not in ("workload", "device_label")]
    return ", ".join(extra)


def by_facet(table: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    """Per facet of ``table`` (its ``FACET_KEYS`` columns): the bold heading index.md
    gives it (workload — device, and the keys that vary) and its rows."""
    facet_cols = [k for k in FACET_KEYS if k in table.columns]
    vary = varying(table, FACET_KEYS)
    for values, g in table.groupby(facet_cols, sort=True, dropna=False):
        key = dict(zip(facet_cols, values, strict=True))
        extra = describe(key, vary)
        yield f"**{key['workload']} — {key['device_label']}**" + (f" ({extra})" if extra else ""), g


def prepare_out(out: Path) -> Path:
    """Create ``out`` (and figures/, tables/) or fail with a usage error."""
    with os_errors_as_usage(f"create report directory {str(out)!r}"):
        for sub in ("", "figures", "tables"):
            (out / sub).mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK):
        raise UsageError(f"report directory {str(out)!r} is not writable")
    return out


# A run directory's path is bytes on Linux, not always UTF-8: Python holds its bad bytes
# as surrogates, and the tables and index name it. Written back as the same bytes.
ENCODING_ERRORS = "surrogateescape"


def write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) or fail with a usage error."""
    with os_errors_as_usage(f"write {str(path)!r}"):
        path.write_text(text, encoding="utf-8", errors=ENCODING_ERRORS)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` as CSV without its index, or fail with a usage error."""
    with os_errors_as_usage(f"write {str(path)!r}"):
        frame.to_csv(path, index=False, errors=ENCODING_ERRORS)
