"""Telemetry, energy and provenance.

The CPU backend is tested for real (psutil, a real busy process, a real sampling thread). There is no
GPU here, so the NVIDIA, AMD and Intel backends run against FAKE vendor libraries (a fake ``pynvml``
and ``amdsmi`` module, a fake ``xpu-smi`` executable), and their tests say so in their names.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
import types
import warnings
from pathlib import Path

import pytest
from helpers import MILABOX, _lines

from milabox.engine import BindMount, ContainerRequest
from milabox.execution.telemetry import FIELDS, Sampler, Telemetry, TelemetryWarning
from milabox.execution.telemetry.cpu import CpuBackend, Rapl
from milabox.execution.telemetry.xpusmi import METRICS, dump_command, parse_dump_line, parse_version
from milabox.reporting.attempt_energy import attempt_energy
from milabox.rundir.layout import PROVENANCE_NAME, TELEMETRY_NAME


def _collect(telemetry: Telemetry, path: Path, seconds: float, interval: float = 0.1, devices=None) -> Sampler:
    sampler = telemetry.sampler(path, interval, devices)
    with sampler:
        time.sleep(seconds)
    return sampler


# --------------------------------------------------------------------------------------------
# CPU backend, for real


def test_cpu_sampler_records_a_busy_process(tmp_path):
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        warned: list[str] = []
        telemetry = Telemetry.open("psutil", on_warning=warned.append)
        path = tmp_path / TELEMETRY_NAME
        sampler = _collect(telemetry, path, seconds=2.0, interval=0.25)
    finally:
        busy.kill()
        busy.wait()
    samples = _lines(path)
    assert len(samples) >= 6 and sampler.samples == len(samples)  # one at start, every 0.25 s, one at stop
    assert {s["device"] for s in samples} == {"cpu"} and {s["backend"] for s in samples} == {"psutil"}
    assert all(list(s) == ["time", "device", "backend", *FIELDS] for s in samples)
    assert [s["time"] for s in samples] == sorted(s["time"] for s in samples)
    assert max(s["util_pct"] for s in samples[1:]) > 30  # one of the cores spins
    assert all(0 < s["memory_used_mb"] < s["memory_total_mb"] for s in samples)
    assert 0 < sampler.cpu_seconds < 0.5  # measured in the thread; far below the 2 s it ran
    if Rapl().available:  # this host exposes RAPL to us: a rising counter and a power reading
        energies = [s["energy_j"] for s in samples]
        assert energies == sorted(energies) and all(s["power_w"] is not None for s in samples[1:])
        assert attempt_energy(tmp_path) is not None
    else:  # no RAPL (or not readable): null, and one warning says why
        assert all(s["power_w"] is None and s["energy_j"] is None for s in samples)
        assert attempt_energy(tmp_path) is None
        assert len(warned) == 1 and "CPU power and energy are not recorded" in warned[0]


def test_rapl_counter_wraps_around_fake_sysfs(tmp_path):
    def domain(name: str, folder: str, energy: int, max_range: int = 1000):
        d = tmp_path / folder
        d.mkdir()
        (d / "name").write_text(name + "\n")
        (d / "energy_uj").write_text(f"{energy}\n")
        (d / "max_energy_range_uj").write_text(f"{max_range}\n")
        (d / "constraint_0_power_limit_uw").write_text("125000000\n")
        return d

    joules = 1_000_000  # energy_uj counts microjoules; the counter wraps at max_energy_range_uj (1000 J here)
    pkg0 = domain("package-0", "intel-rapl:0", 900 * joules, 1000 * joules)
    pkg1 = domain("package-1", "intel-rapl:1", 10 * joules, 1000 * joules)
    domain("core", "intel-rapl:0:0", 5)  # a subdomain: part of package-0, never added again
    domain("psys", "intel-rapl:2", 50)  # the whole platform: would count the packages twice
    rapl = Rapl(tmp_path)
    assert [d.name for d in rapl.domains] == ["package-0", "package-1"]
    assert rapl.energy_j() == 0
    (pkg0 / "energy_uj").write_text(f"{100 * joules}\n")  # wrapped: 900 -> 1000 = 0 -> 100 is 200 J
    (pkg1 / "energy_uj").write_text(f"{60 * joules}\n")
    assert rapl.energy_j() == 250
    (pkg0 / "energy_uj").write_text(f"{400 * joules}\n")
    assert rapl.energy_j() == 550
    assert rapl.describe()["package-0"] == {"power_limit_w": 125.0}
    cpu = CpuBackend(rapl_root=tmp_path)
    cpu.start(1.0)
    first = cpu.read()["cpu"]
    (pkg0 / "energy_uj").write_text(f"{900 * joules}\n")
    second = cpu.read()["cpu"]
    assert first["power_w"] is None and second["power_w"] > 0
    assert second["energy_j"] - first["energy_j"] == 500


def test_interval_zero_samples_nothing(tmp_path):
    telemetry = Telemetry.open("psutil", on_warning=lambda m: None)
    sampler = telemetry.sampler(tmp_path / TELEMETRY_NAME, 0)
    with sampler:
        time.sleep(0.2)
    assert not (tmp_path / TELEMETRY_NAME).exists() and sampler.samples == 0


# --------------------------------------------------------------------------------------------
# A missing library or device


def test_missing_library_warns_once_and_the_cpu_series_goes_on(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` now raises ImportError
    with pytest.warns(TelemetryWarning) as caught:
        telemetry = Telemetry.open("nvml")
    messages = [str(w.message) for w in caught if "nvml" in str(w.message)]
    assert len(messages) == 1 and "nvidia-ml-py (pynvml) is not installed" in messages[0]
    assert [b.name for b in telemetry.backends] == ["psutil"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", TelemetryWarning)  # a second attempt must not warn again
        for attempt in ("a1", "a2"):
            (tmp_path / attempt).mkdir()
            _collect(telemetry, tmp_path / attempt / TELEMETRY_NAME, 0.15)
            assert {s["device"] for s in _lines(tmp_path / attempt / TELEMETRY_NAME)} == {"cpu"}


def test_missing_xpu_smi_warns_once(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no xpu-smi
    warned: list[str] = []
    telemetry = Telemetry.open("xpu-smi", on_warning=warned.append)
    expected = ("telemetry: xpu-smi is not on PATH (install Intel XPU Manager); running without xpu-smi series "
                "(power, energy, utilization)")
    assert [m for m in warned if "xpu-smi" in m] == [expected]
    assert [b.name for b in telemetry.backends] == ["psutil"]


# --------------------------------------------------------------------------------------------
# NVIDIA, with a FAKE pynvml


class FakeNVMLError(Exception):
    pass


def _fake_pynvml() -> types.ModuleType:
    """A fake ``pynvml`` with two GPUs: the functions milabox calls, values a test can predict."""
    nv = types.ModuleType("pynvml")
    state = {"init": 0, "shutdown": 0, "energy_mj": [5_000_000, 9_000_000]}
    nv.state = state
    nv.NVMLError = FakeNVMLError
    nv.nvmlClocksEventReasonGpuIdle, nv.nvmlClocksEventReasonSwPowerCap = 0x1, 0x4
    nv.nvmlClocksEventReasonHwThermalSlowdown = 0x40

    def unsupported(*args):
        raise FakeNVMLError("Not Supported")

    nv.nvmlInit = lambda: state.__setitem__("init", state["init"] + 1)
    nv.nvmlShutdown = lambda: state.__setitem__("shutdown", state["shutdown"] + 1)
    nv.nvmlDeviceGetCount = lambda: 2
    nv.nvmlDeviceGetHandleByIndex = lambda i: i if i < 2 else unsupported()
    nv.nvmlDeviceGetHandleByUUID = unsupported

    def energy(h):  # a cumulative counter (mJ) rising by 250 J per call
        state["energy_mj"][h] += 250_000
        return state["energy_mj"][h]

    nv.nvmlDeviceGetTotalEnergyConsumption = energy
    nv.nvmlDeviceGetPowerUsage = lambda h: 250_000 + 1000 * h  # mW
    nv.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=97, memory=40)
    nv.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=40 * 2**30, total=80 * 2**30, free=40 * 2**30)
    nv.nvmlDeviceGetTemperature = lambda h, sensor: 61 if h == 0 else unsupported()
    nv.nvmlDeviceGetClockInfo = lambda h, clock: 1980 if clock == 1 else 2619
    nv.nvmlDeviceGetCurrentClocksEventReasons = lambda h: 0x4 | 0x40
    nv.nvmlDeviceGetName = lambda h: b"NVIDIA H100 80GB HBM3"
    nv.nvmlDeviceGetUUID = lambda h: f"GPU-fake-{h}"
    nv.nvmlDeviceGetPciInfo = lambda h: types.SimpleNamespace(busId=f"00000000:1{h}:00.0")
    nv.nvmlSystemGetDriverVersion = lambda: "550.54.15"
    nv.nvmlSystemGetCudaDriverVersion = lambda: 12040
    nv.nvmlDeviceGetVbiosVersion = lambda h: "96.00.99.00.01"
    nv.nvmlDeviceGetCudaComputeCapability = lambda h: (9, 0)
    nv.nvmlDeviceGetPowerManagementLimit = lambda h: 700_000
    nv.nvmlDeviceGetEnforcedPowerLimit = lambda h: 700_000
    nv.nvmlDeviceGetMaxClockInfo = lambda h, clock: 1980 if clock == 1 else 2619
    return nv


def test_nvml_backend_samples_and_describes_fake_nvml(tmp_path, monkeypatch):
    nv = _fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    warned: list[str] = []
    telemetry = Telemetry.open("nvml", devices=("0", "1"), on_warning=warned.append)
    assert [b.name for b in telemetry.backends] == ["nvml", "psutil"] and nv.state["init"] == 1
    path = tmp_path / TELEMETRY_NAME
    _collect(telemetry, path, 0.35, interval=0.1, devices=("1",))  # this attempt uses GPU 1 only
    samples = _lines(path)
    gpu = [s for s in samples if s["backend"] == "nvml"]
    assert {s["device"] for s in samples} == {"1", "cpu"} and len(gpu) >= 3
    first = gpu[0]
    assert first["power_w"] == 251.0 and first["util_pct"] == 97
    assert first["memory_used_mb"] == 40 * 1024 and first["memory_total_mb"] == 80 * 1024
    assert first["temperature_c"] is None  # the fake says "Not Supported" for GPU 1: null, not a failure
    assert first["sm_clock_mhz"] == 1980 and first["throttle"] == ["sw_power_cap", "hw_thermal_slowdown"]
    energies = [s["energy_j"] for s in gpu]
    assert energies == sorted(energies) and energies[1] - energies[0] == 250.0
    energy = attempt_energy(tmp_path)
    assert energy is not None and energy.source == "counter"
    assert energy.joules == pytest.approx(energies[-1] - energies[0])
    assert energy.mean_power_w == pytest.approx(energy.joules / energy.seconds)
    facts = telemetry.describe()["nvml"]
    assert facts["driver"] == "550.54.15" and facts["cuda_driver"] == "12.4"
    assert [d["name"] for d in facts["devices"]] == ["NVIDIA H100 80GB HBM3"] * 2
    d0 = facts["devices"][0]
    assert d0["power_limit_w"] == 700 and d0["max_sm_clock_mhz"] == 1980 and d0["firmware_vbios"] == "96.00.99.00.01"
    assert d0["compute_capability"] == "9.0" and d0["default_power_limit_w"] is None  # not in the fake: null
    telemetry.close()
    assert nv.state["shutdown"] == 1 and warned == []


def test_nvml_absent_device_warns_fake_nvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml())
    warned: list[str] = []
    telemetry = Telemetry.open("nvml", devices=("7",), on_warning=warned.append)
    assert [b.name for b in telemetry.backends] == ["psutil"]
    assert len([m for m in warned if "NVML has no GPU '7' (it sees 2)" in m]) == 1


# --------------------------------------------------------------------------------------------
# AMD, with a FAKE amdsmi


def _fake_amdsmi() -> types.ModuleType:
    """A fake ``amdsmi`` (ROCm 6.x names) where some values read "N/A", as on real Instinct parts."""
    smi = types.ModuleType("amdsmi")
    smi.AmdSmiTemperatureType = types.SimpleNamespace(EDGE=0, HOTSPOT=1)
    smi.AmdSmiTemperatureMetric = types.SimpleNamespace(CURRENT=0)
    smi.AmdSmiClkType = types.SimpleNamespace(GFX=1)
    smi.calls = {"shut_down": 0}
    smi.amdsmi_init = lambda *args: None
    smi.amdsmi_shut_down = lambda: smi.calls.__setitem__("shut_down", 1)
    smi.amdsmi_get_processor_handles = lambda: ["h0", "h1"]
    smi.amdsmi_get_power_info = lambda h: {"current_socket_power": "N/A", "average_socket_power": 512,
                                           "gfx_voltage": "N/A", "power_limit": 750}
    counter = {"h0": 1000, "h1": 1000}

    def energy(h):
        counter[h] += 40_000
        return {"energy_accumulator": counter[h], "counter_resolution": 15.3, "timestamp": 0}

    smi.amdsmi_get_energy_count = energy
    smi.amdsmi_get_gpu_activity = lambda h: {"gfx_activity": 88, "umc_activity": 30, "mm_activity": "N/A"}
    smi.amdsmi_get_gpu_vram_usage = lambda h: {"vram_total": 196592, "vram_used": 1024}
    smi.amdsmi_get_temp_metric = lambda h, kind, metric: "N/A" if kind == 1 else 55  # no hotspot: edge is used
    smi.amdsmi_get_clock_info = lambda h, kind: {"clk": 2100, "min_clk": 500, "max_clk": 2100}
    smi.amdsmi_get_gpu_metrics_info = lambda h: {"throttle_status": 0 if h == "h0" else 4}
    smi.amdsmi_get_gpu_asic_info = lambda h: {"market_name": "AMD Instinct MI300X", "vendor_id": "0x1002"}
    smi.amdsmi_get_gpu_driver_info = lambda h: {"driver_name": "amdgpu", "driver_version": "6.8.5"}
    smi.amdsmi_get_fw_info = lambda h: {"fw_list": [{"fw_name": "SMC", "fw_version": "85.114.0"}]}
    smi.amdsmi_get_power_cap_info = lambda h: {"power_cap": 750000000, "default_power_cap": 750000000}
    # Shaped like ROCm/amdsmi py-interface/amdsmi_interface.py: handles need not come in HIP order (here
    # reversed), throttle_status is a bool in amdsmi 7, and the ROCm version is (ok, version).
    smi.amdsmi_get_gpu_enumeration_info = lambda h: {"drm_render": 128, "drm_card": 0, "hsa_id": 2,
                                                     "hip_id": {"h0": 1, "h1": 0}[h], "hip_uuid": f"GPU-{h}"}
    smi.amdsmi_get_rocm_version = lambda: (True, "7.0.1")
    return smi


def test_amdsmi_backend_reads_na_as_null_fake_amdsmi(tmp_path, monkeypatch):
    smi = _fake_amdsmi()
    monkeypatch.setitem(sys.modules, "amdsmi", smi)
    telemetry = Telemetry.open("amdsmi", on_warning=lambda m: None)
    assert [b.name for b in telemetry.backends] == ["amdsmi", "psutil"]
    readings = telemetry.backends[0].read()
    assert set(readings) == {"0", "1"}
    r0 = readings["0"]
    assert r0["power_w"] == 512 and r0["util_pct"] == 88 and r0["temperature_c"] == 55  # N/A skipped, not zero
    assert r0["memory_used_mb"] == 1024 and r0["memory_total_mb"] == 196592 and r0["sm_clock_mhz"] == 2100
    assert r0["energy_j"] == pytest.approx(41_000 * 15.3 / 1e6, abs=1e-3)  # ticks x resolution (uJ)
    assert r0["throttle"] == ["throttle_status=0x4"] and readings["1"]["throttle"] == []  # HIP 0 is handle h1
    _collect(telemetry, tmp_path / TELEMETRY_NAME, 0.25, interval=0.1)
    energy = attempt_energy(tmp_path)
    assert energy is not None and energy.source == "counter" and energy.joules > 0
    described = telemetry.describe()["amdsmi"]
    assert described["rocm"] == "7.0.1"  # the string, not the (ok, version) tuple
    facts = described["devices"][0]
    assert facts["name"] == "AMD Instinct MI300X" and facts["driver"] == "6.8.5"
    assert facts["firmware"] == {"SMC": "85.114.0"} and facts["max_gfx_clock_mhz"] == 2100
    telemetry.close()
    assert smi.calls["shut_down"] == 1


def test_amdsmi_keys_by_hip_id_and_reads_bool_throttle_fake_amdsmi(monkeypatch):
    from milabox.execution.telemetry.amdsmi import AmdSmiBackend
    smi = _fake_amdsmi()
    smi.amdsmi_get_gpu_metrics_info = lambda h: {"throttle_status": h == "h0"}  # amdsmi 7: a bool
    monkeypatch.setitem(sys.modules, "amdsmi", smi)
    backend = AmdSmiBackend(["0"])
    assert backend.handles == {"0": "h1"}  # HIP id 0 is the second handle
    assert backend.read()["0"]["throttle"] == []
    assert AmdSmiBackend(["1"]).read()["1"]["throttle"] == ["throttle_status"]


def test_amdsmi_without_enumeration_info_warns_and_uses_handle_order_fake_amdsmi(monkeypatch):
    from milabox.execution.telemetry.amdsmi import AmdSmiBackend
    smi = _fake_amdsmi()
    del smi.amdsmi_get_gpu_enumeration_info  # amdsmi before ROCm 6.4
    smi.amdsmi_get_rocm_version = lambda: (False, "")
    monkeypatch.setitem(sys.modules, "amdsmi", smi)
    warned: list[str] = []
    backend = AmdSmiBackend(on_warning=warned.append)
    assert backend.handles == {"0": "h0", "1": "h1"} and len(warned) == 1 and "HIP id" in warned[0]
    assert backend.describe()["rocm"] is None


def test_telemetry_open_passes_amdsmi_warnings_on_fake_amdsmi(monkeypatch):
    smi = _fake_amdsmi()
    del smi.amdsmi_get_gpu_enumeration_info
    monkeypatch.setitem(sys.modules, "amdsmi", smi)
    warned: list[str] = []
    Telemetry.open("amdsmi", on_warning=warned.append).close()
    assert any("HIP id" in m for m in warned)


# --------------------------------------------------------------------------------------------
# Intel, with a FAKE xpu-smi executable

# Dump headers quoted from intel/xpumanager's sources. 1.x: cli/src/comlet_dump.h (dumpTypeOptions, names of
# metrics 0,1,2,3,8,18); 2.0: ial/cmn/cmd_dump.cpp (LEGACY_METRIC_NAMES) with the units of ial/cmn/metrics/*.cpp,
# joined as "{name} ({unit})" by DumpOutput::onBegin.
XPU_SMI_HEADERS = {
    "1.2.39": "Timestamp, DeviceId, Average % utilization of all GPU Engines, GPU Power (W), GPU Frequency (MHz), "
              "GPU Core Temperature (Celsius Degree), GPU Energy Consumed (J), GPU Memory Used (MiB)",
    "2.0.0": "Timestamp, DeviceId, utilization.gpu (%), power.draw (W), clocks.current.graphics (MHz), "
             "temperature.gpu (C), energy.consumed (J), memory.used (MiB)",
}

FAKE_XPU_SMI = """\
#!{python}
# A fake xpu-smi of release {version}: --version, discovery as JSON, and a dump that streams CSV rows until
# stopped. 2.0 refuses the short options 1.x had (-d, -m, -i) and takes one --device (-1: all).
import json, os, sys, time
args = sys.argv[1:]
with open(os.environ["FAKE_XPU_LOG"], "a") as log:
    log.write(json.dumps({{"pid": os.getpid(), "args": args}}) + "\\n")
v2 = "{version}".startswith("2.")
if args == ["--version"]:
    print("CLI:\\n    Version: {version}.20250101\\n    Build ID: fake\\n")
elif args[:1] == ["discovery"] and "-d" not in args:
    print(json.dumps({{"device_list": [{{"device_id": 0, "device_name": "Intel(R) Data Center GPU Max 1550"}},
                                      {{"device_id": 1, "device_name": "Intel(R) Data Center GPU Max 1550"}}]}}))
elif args[:1] == ["discovery"]:
    d = args[args.index("-d") + 1]
    print(json.dumps({{"device_id": int(d), "device_name": "Intel(R) Data Center GPU Max 1550",
                      "driver_version": "1.3.29735", "gfx_firmware_version": "2024.11",
                      "memory_physical_size_byte": "68719476736"}}))
elif args[:1] == ["dump"]:
    if v2 and ({{"-d", "-m", "-i"}} & set(args) or args[args.index("--format") + 1] != "csv"):
        print("The following argument was not expected: -m", flush=True)
        sys.exit(1)
    if not v2 and "--format" in args:
        sys.exit(1)
    devices = args[args.index("--device") + 1]
    devices = ["0", "1"] if devices == "-1" else devices.split(",")
    print("{header}", flush=True)
    energy = 1000.0
    while True:
        energy += 30.0
        for d in devices:
            print(f"06:14:46.000,    {{d}}, 93.50, 301.25, 1600, 47.00, {{energy:.2f}}, N/A", flush=True)
        time.sleep(0.05)
"""


@pytest.mark.parametrize(("version", "dump_args"), [
    ("1.2.39", ["dump", "--device", "1", "--metrics", METRICS, "-i", "1"]),
    ("2.0.0", ["dump", "--device", "1", "--metrics", METRICS, "--interval", "1", "--format", "csv"]),
])
def test_xpu_smi_backend_follows_the_dump_fake_xpu_smi(tmp_path, monkeypatch, version, dump_args):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "xpu-smi"
    exe.write_text(FAKE_XPU_SMI.format(python=sys.executable, version=version, header=XPU_SMI_HEADERS[version]))
    exe.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_XPU_LOG", str(log))
    warned: list[str] = []
    telemetry = Telemetry.open("xpu-smi", devices=("1",), on_warning=warned.append)
    assert [b.name for b in telemetry.backends] == ["xpu-smi", "psutil"]
    (tmp_path / "a").mkdir()
    _collect(telemetry, tmp_path / "a" / TELEMETRY_NAME, 0.6, interval=0.2)
    gpu = [s for s in _lines(tmp_path / "a" / TELEMETRY_NAME) if s["backend"] == "xpu-smi"]
    assert gpu and {s["device"] for s in gpu} == {"1"}
    last = gpu[-1]
    assert last["util_pct"] == 93.5 and last["power_w"] == 301.25 and last["sm_clock_mhz"] == 1600
    assert last["temperature_c"] == 47 and last["memory_used_mb"] is None  # "N/A" in the dump
    assert last["memory_total_mb"] == 65536 and last["energy_j"] > 1000
    calls = _lines(log)
    dump = [c for c in calls if c["args"][0] == "dump"]
    assert len(dump) == 1 and dump[0]["args"] == dump_args
    with pytest.raises(ProcessLookupError):  # stopped with the sampler: no dump outlives its attempt
        os.kill(dump[0]["pid"], 0)
    facts = telemetry.describe()["xpu-smi"]["devices"][0]
    assert facts["name"] == "Intel(R) Data Center GPU Max 1550" and facts["driver"] == "1.3.29735"
    assert facts["firmware"] == "2024.11" and not [m for m in warned if "xpu-smi" in m]
    telemetry.close()


@pytest.mark.parametrize("version", sorted(XPU_SMI_HEADERS))
def test_xpu_smi_dump_line_parsing_by_position(version):
    header = [c.strip() for c in XPU_SMI_HEADERS[version].split(",")]
    assert parse_dump_line(header, "06:14:46.000,    0, 14.61, 300.5, 1550, 40.00, 1234.5, 2048\n") == ("0", {
        "util_pct": 14.61, "power_w": 300.5, "sm_clock_mhz": 1550, "temperature_c": 40, "energy_j": 1234.5,
        "memory_used_mb": 2048})
    assert parse_dump_line(header, "Error: the XPU Manager daemon is not running") is None


def test_xpu_smi_version_and_dump_command():
    assert parse_version("CLI:\n    Version: 1.2.39.20241010\n    Build ID: 1\n") == (1, 2, 39, 20241010)
    assert parse_version("no version here") is None
    assert dump_command("x", (2, 0, 0), ("0", "1"), "2")[:4] == ["x", "dump", "--device", "-1"]
    assert dump_command("x", None, ("0", "1"), "2") == ["x", "dump", "--device", "0,1", "--metrics", METRICS, "-i", "2"]


# --------------------------------------------------------------------------------------------
# Energy from written files


def _write(folder: Path, samples: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"backend": "test", **{f: None for f in FIELDS}, **s}) for s in samples]
    (folder / TELEMETRY_NAME).write_text("\n".join(lines) + '\n{"time": 99, "dev')  # and a line cut short
    return folder


def test_energy_prefers_the_counter_over_power(tmp_path):
    folder = _write(tmp_path / "a", [
        {"time": 100.0, "device": "0", "energy_j": 5000.0, "power_w": 10.0},
        {"time": 101.0, "device": "0", "energy_j": 5200.0, "power_w": 10.0},  # power disagrees: the counter wins
        {"time": 102.0, "device": "0", "energy_j": 5400.0, "power_w": 10.0},
    ])
    energy = attempt_energy(folder)
    assert energy is not None and (energy.joules, energy.seconds, energy.mean_power_w, energy.source) == (
        400.0, 2.0, 200.0, "counter")
    part = attempt_energy(folder, start=100.5, end=101.5)  # edges interpolated between samples
    assert part is not None and (part.joules, part.seconds) == (200.0, 1.0)


def test_energy_integrates_power_without_a_counter(tmp_path):
    folder = _write(tmp_path / "a", [
        {"time": 10.0, "device": "0", "power_w": 100.0},
        {"time": 12.0, "device": "0", "power_w": 200.0},
        {"time": 13.0, "device": "0", "power_w": 200.0},
        {"time": 10.0, "device": "1", "power_w": 50.0},
        {"time": 13.0, "device": "1", "power_w": 50.0},
        {"time": 10.0, "device": "cpu", "power_w": 90.0},  # the host: not counted beside accelerators
        {"time": 13.0, "device": "cpu", "power_w": 90.0},
    ])
    energy = attempt_energy(folder)
    # device 0: trapezoids 2 s * 150 W + 1 s * 200 W = 500 J; device 1: 3 s * 50 W = 150 J
    assert energy is not None and (energy.joules, energy.seconds, energy.source) == (650.0, 3.0, "power")
    assert energy.mean_power_w == pytest.approx(650 / 3, abs=1e-3)


def test_energy_edge_cases(tmp_path):
    reset = _write(tmp_path / "reset", [  # a counter that goes back (driver reload) is not trusted
        {"time": 0.0, "device": "0", "energy_j": 900.0, "power_w": 100.0},
        {"time": 1.0, "device": "0", "energy_j": 10.0, "power_w": 100.0},
    ])
    assert attempt_energy(reset).source == "power" and attempt_energy(reset).joules == 100.0
    cpu_only = _write(tmp_path / "cpu", [{"time": 0.0, "device": "cpu", "energy_j": 1.0},
                                         {"time": 4.0, "device": "cpu", "energy_j": 81.0}])
    assert attempt_energy(cpu_only).mean_power_w == 20.0  # a CPU-vendor run: the host is the device
    no_power = _write(tmp_path / "none", [{"time": 0.0, "device": "0", "util_pct": 50.0},
                                          {"time": 1.0, "device": "0", "util_pct": 60.0}])
    assert attempt_energy(no_power) is None
    assert attempt_energy(tmp_path / "missing") is None
    assert attempt_energy(reset, start=5.0, end=6.0) is None  # the window is outside the samples


# --------------------------------------------------------------------------------------------
# Provenance pieces


def test_docker_run_command_quotes_everything():
    request = ContainerRequest(
        image="milabox/bert:cuda-0.1.0", environment={"MILABOX_CONFIG": '{"n": 1, "name": "a b"}'},
        mounts=(BindMount("/runs/x y", "/results", read_only=False), BindMount("/etc/m", "/m")), user="1000:1000",
        gpu_request=True, gpu_ids=("0", "1"), devices=("/dev/kfd",), group_add=("video",),
        security_opt=("seccomp=unconfined",), ipc_mode="host", shm_size="8g", labels={"milabox.benchmark": "bert"})
    args = shlex.split(request.docker_run_command())
    assert args[:3] == ["docker", "run", "--rm"] and args[-1] == "milabox/bert:cuda-0.1.0"
    pairs = list(zip(args[3:-1:2], args[4:-1:2], strict=True))
    assert ("--env", 'MILABOX_CONFIG={"n": 1, "name": "a b"}') in pairs and ("--network", "none") in pairs
    assert ("--mount", "type=bind,source=/runs/x y,target=/results") in pairs
    assert ("--mount", "type=bind,source=/etc/m,target=/m,readonly") in pairs
    assert ("--gpus", '"device=0,1"') in pairs and ("--device", "/dev/kfd:/dev/kfd:rwm") in pairs
    assert {("--user", "1000:1000"), ("--group-add", "video"), ("--security-opt", "seccomp=unconfined"),
            ("--ipc", "host"), ("--shm-size", "8g"), ("--label", "milabox.benchmark=bert")} <= set(pairs)


def test_report_provenance_of_a_run_without_one_is_one_line(tmp_path):
    out = subprocess.run([*MILABOX, "report", str(tmp_path), "--provenance"], capture_output=True, text=True, check=False)
    assert out.returncode == 2 and out.stdout == ""
    expected = (f"milabox: error: {tmp_path / PROVENANCE_NAME}: missing (the run folder has no provenance record; "
                "runs made before milabox recorded provenance do not)")
    assert out.stderr.strip().splitlines() == [expected]
