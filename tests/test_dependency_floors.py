"""pyproject's floors are what the code needs: a feature used in the code raises the floor
of the package that introduced it (an install at the old floor would fail at run time)."""

from __future__ import annotations

import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.helpers import ROOT

# (package, minimum version, regex of the use in the code, where it is documented)
NEEDS = [
    ("torch", "2.4", r"nn\.RMSNorm\(", "torch.nn.RMSNorm is new in torch 2.4"),
    ("scipy", "1.7", r"mannwhitneyu\(", "scipy.stats.mannwhitneyu's exact method is new in 1.7"),
    ("pandas", "2.1", r"\.map\(", "DataFrame.map (was applymap) is new in pandas 2.1"),
]


def floors() -> dict[str, Version]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    out = {}
    for line in deps:
        req = Requirement(line)
        lows = [Version(s.version) for s in req.specifier if s.operator in (">=", "==")]
        out[req.name] = max(lows) if lows else Version("0")
    return out


def code() -> str:
    files = [*ROOT.glob("architectures/**/*.py"), *ROOT.glob("harness/**/*.py"),
             *ROOT.glob("workloads/**/*.py")]
    return "\n".join(p.read_text() for p in files)


@pytest.mark.parametrize("package,minimum,pattern,why", NEEDS)
def test_floor_covers_features_used(package, minimum, pattern, why):
    if not re.search(pattern, code()):
        pytest.skip(f"the code no longer uses it ({why})")
    assert floors()[package] >= Version(minimum), f"{package} floor too low: {why}"


def test_gpu_extra_names_the_fused_kernel_packages():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    names = {Requirement(r).name for r in extras["gpu"]}
    assert names == {"mamba-ssm", "flash-linear-attention"}
