"""One colour and one marker per architecture, the same in every figure of a report.

Colours come from the Okabe–Ito palette (distinguishable with the common colour-vision
deficiencies and in greyscale by marker); yellow is last because it is faint on white.
Beyond eight architectures colours repeat, with a different marker and a dashed (then
dotted) line, so no two architectures look alike. Slots follow the registry's order
(baseline first), so an architecture keeps its look across reports of different runs.
Failure markers (``X`` for OOM and so on) are reserved and never given to an architecture.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

OKABE_ITO = (
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#000000",  # black
    "#F0E442",  # yellow
)
MARKERS = ("o", "s", "^", "D", "v", "p", "<", "h", ">", "*", "8", "H")
# status → (marker, label) for cells that did not produce a time
FAILURE_MARKERS = {
    "oom": ("X", "OOM"),
    "timeout": ("$\u231a$", "timeout"),
    "error": ("$!$", "error"),
    "nonfinite": ("$\\varnothing$", "non-finite"),  # NaN/inf outputs or loss: no time
}

# figure widths in inches: a paper's single and double column
WIDTHS = {"single": 3.3, "double": 7.0}


LINESTYLES = ("-", "--", ":")


@dataclass(frozen=True)
class ArchStyle:
    color: str
    marker: str
    linestyle: str = "-"


def arch_styles(archs: Iterable[str], first: str | None = None) -> dict[str, ArchStyle]:
    """Deterministic styles: ``first`` (the baseline) gets the first slot, then every
    registered architecture in registry order, then unregistered names (plugins) sorted."""
    import architectures

    present = set(archs)
    order = [first] if first else []
    order += [a for a in architectures.available() if a not in order]
    order += sorted(present - set(order))
    return {
        a: ArchStyle(
            OKABE_ITO[i % len(OKABE_ITO)],
            MARKERS[i % len(MARKERS)],
            LINESTYLES[(i // len(OKABE_ITO)) % len(LINESTYLES)],
        )
        for i, a in enumerate(order)
        if a in present
    }


def rc_for_width(width_in: float) -> dict[str, object]:
    """Matplotlib rc settings readable at ``width_in``: small type for one column.

    ``pdf.fonttype``/``ps.fonttype`` 42 embed TrueType fonts (journals reject Type 3);
    SVG keeps text as text so it stays editable and searchable.
    """
    base = 7.0 if width_in < 5 else 8.5
    return {
        "font.size": base,
        "axes.titlesize": base,
        "axes.labelsize": base,
        "xtick.labelsize": base - 1,
        "ytick.labelsize": base - 1,
        "legend.fontsize": base - 1,
        "legend.title_fontsize": base - 1,
        "legend.handlelength": 3.2,  # long enough to show a dashed line beside the marker
        "lines.linewidth": 1.2,
        "lines.markersize": 4.0 if width_in < 5 else 5.0,
        "axes.linewidth": 0.6,
        "grid.linewidth": 0.4,
        "grid.alpha": 0.5,
        "xtick.major.width": 0.6,
        "ytick.major.width": 0.6,
        "xtick.minor.width": 0.4,
        "ytick.minor.width": 0.4,
        "pdf.fonttype": 42,
        "ps.fonttype": 42,
        "svg.fonttype": "none",
        "savefig.dpi": 300,
        "legend.frameon": False,
    }


def arch_families(archs: Iterable[str]) -> dict[str, str]:
    """Each architecture's family from the registry ("other" for one not registered here,
    e.g. a plugin's adapter the report's process did not load)."""
    import architectures

    out = {}
    for a in archs:
        try:
            out[a] = architectures.info(a).family
        except Exception:  # noqa: BLE001 - unknown here: still drawn, in its own group
            out[a] = "other"
    return out
