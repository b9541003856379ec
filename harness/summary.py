"""The table printed at the end of a sweep: median time and speedup over a baseline.

Speedup = baseline median / architecture median, in the same run, same workload, length,
batch, dtype and device. Failed cells show their status; noisy medians are marked ``~``.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.records import Record


def _key(r: Record) -> tuple:
    return (r.workload, r.device, r.dtype, r.batch, r.preset, r.compile)


def summary_rows(records: Sequence[Record], baseline: str) -> dict[tuple, dict[str, dict[int, str]]]:
    """{(workload, device, dtype, batch, preset, compile): {arch: {seq_len: text}}}."""
    base = {(_key(r), r.seq_len): r for r in records if r.arch == baseline and r.status == "ok"}
    out: dict[tuple, dict[str, dict[int, str]]] = {}
    for r in records:
        row = out.setdefault(_key(r), {}).setdefault(r.arch, {})
        if r.status != "ok" or r.time_median_s is None:
            row[r.seq_len] = r.status.upper()
            continue
        text = f"{r.time_median_s * 1e3:.3g} ms" + ("~" if r.noisy else "")
        b = base.get((_key(r), r.seq_len))
        if b is not None and r.arch != baseline:
            text += f" ({b.time_median_s / r.time_median_s:.2f}x)"
        row[r.seq_len] = text
    return out


def print_summary(records: Sequence[Record], baseline: str = "lmu") -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for key, rows in summary_rows(records, baseline).items():
        workload, device, dtype, batch, preset, compile_ = key
        lengths = sorted({n for row in rows.values() for n in row})
        title = (f"{workload} on {device}, {dtype}, batch {batch}, preset {preset}"
                 + (f", compile {compile_}" if compile_ != "none" else "")
                 + f" — median time (speedup vs {baseline})")
        table = Table(title=title)
        table.add_column("arch")
        for n in lengths:
            table.add_column(f"n={n}", justify="right")
        for arch, row in rows.items():
            table.add_row(arch, *(row.get(n, "") for n in lengths))
        console.print(table)
    if any(r.noisy for r in records):
        console.print("~ noisy: IQR/median above the noise threshold; treat with care")
