"""Stage 1, **environment**: what was found (torch, CUDA, device, fused kernels, float32
policy), written to ``env.json``, and one matmul on the device to see it computes."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from harness.selftest.verdict import Check, Outcome


def check_environment(device: str, out: Path) -> Check:
    from architectures.optional import float32_policy, kernel_status
    from harness.store.env import capture

    env = capture(device)
    env["kernels"] = kernel_status()
    env["float32_policy"] = float32_policy()
    (out / "env.json").write_text(json.dumps(env, indent=2, default=str))
    dev = torch.device(device)
    a = torch.ones(64, 64, device=dev)
    ok = bool(torch.allclose((a @ a).cpu(), torch.full((64, 64), 64.0)))
    kernels = ", ".join(f"{k}: {v}" for k, v in env["kernels"].items())
    lines = [f"- {k}: {env.get(k)}" for k in ("torch", "cuda", "cudnn", "device_name",
                                              "torch_threads", "git_commit", "git_dirty")]
    lines += [f"- float32 policy: {env['float32_policy']}", f"- kernels: {kernels}"]
    summary = (f"torch {env['torch']}, {env['device_name']}, float32 {env['float32_policy']}"
               + ("" if ok else "; a matmul on the device gave a wrong result"))
    return Check("environment", Outcome.PASS if ok else Outcome.FAIL, summary,
                 brief="" if ok else "a matmul on the device gave a wrong result",
                 lines=lines, data=env)
