"""The README's "add your own adapter" example works as printed (in a fresh process, so
the extra adapter does not leak into other tests' registry)."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.helpers import ROOT

CHECK = """
import sys, torch, architectures
from harness.run.plugins import load_plugin
load_plugin(sys.argv[1])
m = architectures.build("gru", preset="small").double()
assert abs(m.num_params() - architectures.target_params("small")) <= 0.05 * 1e5, m.num_params()
x = torch.randn(2, 12, 1, dtype=torch.float64)
y = m(x)
h = m.init_state(2, dtype=torch.float64)
steps = []
for t in range(12):
    y_t, h = m.step(x[:, t], h)
    steps.append(y_t)
torch.testing.assert_close(torch.stack(steps, 1), y)
print("ok", m.num_params())
"""


def test_add_your_own_adapter_example_runs_and_fits_in_30_lines(tmp_path):
    text = (ROOT / "README.md").read_text()
    section = text.split("### Add your own adapter", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) < 30
    plugin = tmp_path / "my_adapters.py"
    plugin.write_text(code)
    r = subprocess.run([sys.executable, "-c", CHECK, str(plugin)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok")
