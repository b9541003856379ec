"""The machine's ceilings: SKU detection from device-name strings, the datasheet file, a
CPU measurement within its budget, the cache, and the CUDA clock driven on a CPU through a
fake ``torch.cuda`` that keeps the event API's rules."""

from __future__ import annotations

import json
import time

import pytest
import torch

from harness.measure import ceilings as cm
from harness.measure.ceilings import (
    CPU_BUDGET_S,
    Ceilings,
    CudaClock,
    Plan,
    attach_datasheet,
    detect_sku,
    load_datasheets,
    match,
    measure,
    measure_with,
)

# ---------------------------------------------------------------- SKUs and datasheets


@pytest.mark.parametrize("name, sku", [
    ("NVIDIA H100 80GB HBM3", "H100 SXM5 80GB"),
    ("NVIDIA H100 PCIe", "H100 PCIe 80GB"),
    ("NVIDIA H200", "H200 SXM 141GB"),
    ("NVIDIA A100-SXM4-80GB", "A100 SXM4 80GB"),
    ("NVIDIA A100-SXM-80GB", "A100 SXM4 80GB"),
    ("NVIDIA A100-SXM4-40GB", "A100 SXM4 40GB"),
    ("A100-SXM4-40GB", "A100 SXM4 40GB"),  # older drivers: no "NVIDIA " prefix
    ("NVIDIA A100-PCIE-40GB", "A100 PCIe 40GB"),
    ("NVIDIA A100 80GB PCIe", "A100 PCIe 80GB"),
    ("  nvidia h100 pcie ", "H100 PCIe 80GB"),
])
def test_sku_is_read_from_the_device_name(name, sku):
    sheet, note = detect_sku(name)
    assert sheet is not None and sheet.sku == sku
    assert sku in note


@pytest.mark.parametrize("name, why", [
    ("NVIDIA H200 NVL", "not a listed SKU"),  # a sibling of a listed SKU is not that SKU
    ("NVIDIA H100 NVL", "not a listed SKU"),
    ("NVIDIA GH200 480GB", "not a listed SKU"),
    ("NVIDIA GeForce RTX 4090", "not a listed SKU"),
    ("NVIDIA H100", "not a listed SKU"),  # which H100? never assumed
    ("NVIDIA A100-SXM4-40GB MIG 3g.20gb", "MIG slice"),
    ("", "not a listed SKU"),
])
def test_an_unknown_name_has_no_datasheet_and_says_why(name, why):
    sheet, note = detect_sku(name)
    assert sheet is None
    assert note.startswith("no datasheet") and why in note


def test_datasheets_are_sourced_dense_and_consistent():
    sheets = load_datasheets()
    assert {s.sku for s in sheets} >= {"H100 SXM5 80GB", "H100 PCIe 80GB", "H200 SXM 141GB",
                                       "A100 SXM4 40GB", "A100 SXM4 80GB", "A100 PCIe 40GB",
                                       "A100 PCIe 80GB"}
    names = [n.lower() for s in sheets for n in s.names]
    assert len(names) == len(set(names))  # one SKU per name
    for s in sheets:
        assert s.source.startswith("NVIDIA ") and "Datasheet" in s.source
        assert s.url.startswith("https://www.nvidia.com/") or s.url.startswith(
            "https://resources.nvidia.com/")
        assert 1e13 < s.fp32 < s.tf32 < s.bf16 == s.fp16 < 2e15  # FLOP/s, dense
        assert 1e12 < s.memory < 1e13  # bytes/s
    h100 = next(s for s in sheets if s.sku == "H100 SXM5 80GB")
    assert h100.bf16 == pytest.approx(1979e12 / 2, rel=1e-3)  # the sparse figure halved
    assert h100.memory == pytest.approx(3.35e12)


def test_the_datasheet_roof_follows_dtype_and_float32_policy():
    sheet, _ = detect_sku("NVIDIA A100-SXM4-80GB")
    assert sheet.flops_for("float32", "strict") == (19.5e12, "FP32")
    assert sheet.flops_for("float32", "tf32") == (156e12, "TF32 tensor core")
    assert sheet.flops_for("bfloat16") == (312e12, "BF16 tensor core")
    assert sheet.flops_for("float64") is None


def _ceil(**kw) -> Ceilings:
    base = dict(device="cpu", device_name="cpu: X", dtype="float32", threads=2,
                precision="strict", peak_flops=1e11, bandwidth=1e10, cache_bandwidth=5e10,
                torch="2.x", host="h")
    return Ceilings(**{**base, **kw})


def test_a_cuda_ceiling_carries_its_skus_datasheet_or_why_not():
    c = attach_datasheet(_ceil(device="cuda:0", device_name="NVIDIA H100 80GB HBM3",
                               dtype="bfloat16"))
    assert c.datasheet["sku"] == "H100 SXM5 80GB"
    assert c.datasheet["peak_flops"] == pytest.approx(989.5e12)
    assert c.datasheet["bandwidth"] == pytest.approx(3.35e12)
    assert "nvidia.com" in c.datasheet["url"]
    c = attach_datasheet(_ceil(device="cuda:0", device_name="NVIDIA L4"))
    assert c.datasheet is None and "not a listed SKU" in c.datasheet_note


def test_match_keeps_a_cpus_roofs_to_their_thread_count():
    entries = [_ceil(threads=1).to_dict(), _ceil(threads=2, peak_flops=2e11).to_dict()]
    assert match(entries, "cpu", "float32", 2).peak_flops == 2e11
    assert match(entries, "cpu", "float32", 4) is None
    assert match(entries, "cpu", "bfloat16", 2) is None
    assert match(entries, "cuda", "float32", 2) is None
    gpu = [_ceil(device="cuda:0", precision="tf32").to_dict()]
    assert match(gpu, "cuda", "float32", 8, "strict") is None  # TF32 roofs: not a strict cell's
    assert match(gpu, "cuda:0", "float32", 8, "tf32") is not None
    assert match([{"nonsense": 1}, "x"], "cpu", "float32", 2) is None


# ---------------------------------------------------------------- measuring on a CPU


def test_cpu_ceilings_are_measured_within_budget_and_plausible():
    before = torch.get_num_threads()
    t0 = time.perf_counter()
    c = measure("cpu", "float32", threads=1)
    wall = time.perf_counter() - t0
    assert wall <= CPU_BUDGET_S and c.seconds <= CPU_BUDGET_S
    assert torch.get_num_threads() == before  # restored
    assert c.threads == 1 and c.kind == "cpu" and c.datasheet is None
    assert c.peak_flops > 0 and c.bandwidth > 0 and c.cache_bandwidth > 0
    # a naive elementwise rate: one FLOP per element of an add, bound by the stream
    elementwise = c.bandwidth / (3 * 4)
    assert c.peak_flops > 2 * elementwise
    # a 1 GFLOP/s..100 TFLOP/s core, 0.1 GB/s..10 TB/s memory: units are right
    assert 1e9 < c.peak_flops < 1e14 and 1e8 < c.bandwidth < 1e13
    assert "bytes read + written" in c.method["bandwidth"]
    assert "2n^3" in c.method["peak_flops"]
    json.dumps(c.to_dict(), allow_nan=False)  # storable in env.json as it is


TINY = Plan(matmul_n=64, stream_bytes=1 << 20, cache_bytes=(16 << 10,), matmul_s=0.02,
            stream_s=0.02, cache_s=0.02)


def fake_ceilings(**kw):
    return _ceil(**{"others_cores": 0.0, **kw})


def test_the_cache_measures_once_per_key(tmp_path, monkeypatch):
    calls = []

    def fake_measure(device, dtype, threads, precision, *, device_name=None):
        calls.append((device, dtype, threads))
        return fake_ceilings(dtype=dtype, threads=threads, device_name=device_name,
                             host=cm.socket.gethostname(), torch=torch.__version__)

    monkeypatch.setattr(cm, "measure", fake_measure)
    path = tmp_path / "ceilings.json"
    first = cm.ceilings("cpu", "float32", 2, device_name="cpu: X", path=path)
    again = cm.ceilings("cpu", "float32", 2, device_name="cpu: X", path=path)
    assert len(calls) == 1 and not first.cached and again.cached
    assert again.peak_flops == first.peak_flops
    cm.ceilings("cpu", "float32", 1, device_name="cpu: X", path=path)  # other threads
    cm.ceilings("cpu", "bfloat16", 2, device_name="cpu: X", path=path)  # other dtype
    cm.ceilings("cpu", "float32", 2, device_name="cpu: Y", path=path)  # other CPU
    assert len(calls) == 4
    cm.ceilings("cpu", "float32", 2, device_name="cpu: X", path=path, how="remeasure")
    assert len(calls) == 5
    assert cm.ceilings("cpu", "float32", 2, path=path, how="off") is None
    assert len(json.loads(path.read_text())) == 4


def test_a_contended_or_damaged_measurement_is_not_trusted_later(tmp_path, monkeypatch):
    path = tmp_path / "ceilings.json"
    path.write_text("{not json")
    monkeypatch.setattr(cm, "measure", lambda *a, **k: fake_ceilings(others_cores=1.5))
    c = cm.ceilings("cpu", "float32", 2, device_name="cpu: X", path=path)
    assert "not cached" in c.method["cache"]
    assert cm._read_cache(path) == {}  # nothing cached: the next run measures again


def test_the_mode_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("SEQBENCH_CEILINGS", raising=False)
    assert cm.mode() == "cache"
    monkeypatch.setenv("SEQBENCH_CEILINGS", "OFF")
    assert cm.mode() == "off"
    monkeypatch.setenv("SEQBENCH_CEILINGS", "sometimes")
    with pytest.raises(ValueError, match="valid choices"):
        cm.mode()
    monkeypatch.setenv("SEQBENCH_CACHE_DIR", "/x/y")
    assert str(cm.cache_path()) == "/x/y/ceilings.json"


# ---------------------------------------------------------------- the CUDA path, faked


class FakeEvent:
    """``torch.cuda.Event`` with the real API's rules: ``elapsed_time`` needs both events
    made with ``enable_timing=True``, both recorded, and the end one completed
    (``synchronize``d); it returns milliseconds."""

    def __init__(self, enable_timing: bool = False, blocking: bool = False,
                 interprocess: bool = False) -> None:
        self.enable_timing = enable_timing
        self.at: float | None = None
        self.done = False

    def record(self, stream=None) -> None:
        if stream is not None and not isinstance(stream, FakeStream):
            raise TypeError("record() expects a torch.cuda.Stream")
        self.at, self.done = time.perf_counter(), False

    def synchronize(self) -> None:
        if self.at is None:
            raise RuntimeError("synchronize on an event never recorded")
        self.done = True

    def elapsed_time(self, end: FakeEvent) -> float:
        if not (self.enable_timing and end.enable_timing):
            raise RuntimeError("Both events must be created with argument 'enable_timing=True'")
        if self.at is None or end.at is None:
            raise RuntimeError("Both events must be recorded before calculating elapsed time")
        if not end.done:
            raise RuntimeError("CUDA error: device not ready")
        return (end.at - self.at) * 1e3


class FakeStream:
    pass


class FakeCuda:
    def __init__(self, monkeypatch, name: str = "NVIDIA H100 80GB HBM3") -> None:
        from torch.cuda._utils import _get_device_index

        self.synced: list[int] = []
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
        monkeypatch.setattr(torch.cuda, "current_stream",
                            lambda device=None: (_get_device_index(device, optional=True),
                                                 FakeStream())[1])
        monkeypatch.setattr(torch.cuda, "synchronize",
                            lambda device=None: self.synced.append(
                                _get_device_index(device, optional=True)))
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)


def test_the_fake_keeps_the_event_rules():
    start, end = FakeEvent(enable_timing=True), FakeEvent(enable_timing=True)
    start.record(FakeStream())
    end.record(FakeStream())
    with pytest.raises(RuntimeError, match="not ready"):
        start.elapsed_time(end)  # not waited for
    end.synchronize()
    assert start.elapsed_time(end) >= 0
    with pytest.raises(RuntimeError, match="enable_timing"):
        FakeEvent().elapsed_time(end)
    with pytest.raises(RuntimeError, match="recorded"):
        FakeEvent(enable_timing=True).elapsed_time(end)


def test_the_cuda_clock_follows_the_event_rules(monkeypatch):
    fake = FakeCuda(monkeypatch)
    clock = CudaClock(torch.device("cuda", 0))
    s = clock.seconds_per_call(lambda: time.sleep(0.002), 3)
    assert 0.0015 < s < 0.05  # seconds per call, from milliseconds
    assert fake.synced == [0]  # the device synchronised before the start event


def test_the_cuda_measurement_path_runs_on_a_fake(monkeypatch):
    FakeCuda(monkeypatch)
    peak, bw, cache_bw, method = measure_with(torch.device("cpu"),
                                              CudaClock(torch.device("cuda", 0)), TINY,
                                              "float32")
    assert peak > 0 and bw > 0 and cache_bw > 0
    assert "64x64" in method["peak_flops"]
    c = attach_datasheet(_ceil(device="cuda:0", device_name=torch.cuda.get_device_name(0),
                               peak_flops=peak, bandwidth=bw, cache_bandwidth=cache_bw))
    assert c.datasheet["sku"] == "H100 SXM5 80GB"
    assert c.datasheet["peak_label"] == "FP32"


def test_the_cuda_plan_is_sized_for_a_gpu():
    p = cm.plan_for("cuda", 8)
    assert p.matmul_n >= 4096 and p.stream_bytes >= 1 << 30
    assert max(p.cache_bytes) * 2 <= 40 << 20  # source and copy fit an A100's 40 MB L2
    assert p.matmul_s + 2 * p.stream_s + len(p.cache_bytes) * p.cache_s <= cm.CUDA_BUDGET_S


@pytest.mark.gpu
def test_cuda_ceilings_are_measured_and_under_the_datasheet():
    c = measure("cuda", "float32")
    assert c.peak_flops > 0 and c.bandwidth > 0 and c.cache_bandwidth >= c.bandwidth * 0.5
    assert c.seconds < 3 * cm.CUDA_BUDGET_S
    if c.datasheet:  # a listed SKU: a roof cannot be above the datasheet
        assert c.peak_flops <= 1.1 * c.datasheet["peak_flops"]
        assert c.bandwidth <= 1.1 * c.datasheet["bandwidth"]
    else:
        assert c.datasheet_note.startswith("no datasheet")
