"""Intel GPUs through the ``xpu-smi`` command (Intel XPU Manager).

``xpu-smi dump`` streams one CSV row per device per interval for as long as it runs, so one dump
process runs per attempt and a thread blocked on its output keeps each device's latest row; a sample
takes the latest rows (no process started per sample). Device ids are xpu-smi device ids: cards, the ids
ZE_AFFINITY_MASK names under ZE_FLAT_DEVICE_HIERARCHY=COMPOSITE (set in vendors/xpu.toml).

Columns are read by metric position, not by title: titles differ between releases. In xpu-smi 1.x
(intel/xpumanager cli/src/comlet_dump.h, dumpTypeOptions) metric 0 is titled "Average % utilization of all
GPU Engines"; 2.0 (ial/cmn/cmd_dump.cpp, LEGACY_METRIC_NAMES) titles columns "<field> (<unit>)", e.g.
"utilization.gpu (%)", and dropped the short options ``-m``/``-i`` (its options: ``--device`` (one id or -1),
``--metrics``, ``--interval``, ``--format csv``). ``xpu-smi --version`` prints "Version: <x.y.z...>" in both.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from typing import IO, Any

from .base import Backend, Unavailable, number, text

# Dump metric ids (the same in 1.x and 2.0) and the field each fills, in the order the columns come.
_METRICS = ((0, "util_pct"), (1, "power_w"), (2, "sm_clock_mhz"), (3, "temperature_c"), (8, "energy_j"),
            (18, "memory_used_mb"))
METRICS = ",".join(str(m) for m, _ in _METRICS)
_TIMEOUT_S = 30


def parse_version(out: str) -> tuple[int, ...] | None:
    """The CLI version in ``xpu-smi --version`` output (its first "Version:" line), e.g. (2, 0, 0)."""
    match = re.search(r"Version:\s*(\d+(?:\.\d+)*)", out)
    return tuple(int(p) for p in match.group(1).split(".")) if match else None


def dump_command(exe: str, version: tuple[int, ...] | None, ids: Sequence[str], interval: str) -> list[str]:
    """The ``xpu-smi dump`` command line of this release.

    Args:
        exe: the xpu-smi path.
        version: from :func:`parse_version`; None reads as 1.x.
        ids: device ids.
        interval: whole seconds.

    Returns:
        argv: 2.0 and later take one ``--device`` (-1: all; rows are filtered by id) and ``--format csv``.
    """
    if version and version[0] >= 2:
        device = ids[0] if len(ids) == 1 else "-1"
        return [exe, "dump", "--device", device, "--metrics", METRICS, "--interval", interval, "--format", "csv"]
    return [exe, "dump", "--device", ",".join(ids), "--metrics", METRICS, "-i", interval]


def parse_dump_line(header: list[str], line: str) -> tuple[str, dict[str, Any]] | None:
    """One ``xpu-smi dump`` CSV row as (device id, fields); None for a line that is not a data row.

    Args:
        header: the column names of the dump's first line, stripped.
        line: a data line.

    Returns:
        The metric columns are the last ones, in :data:`METRICS` order, whatever their titles.
    """
    cells = [c.strip() for c in line.split(",")]
    if len(cells) != len(header) or "DeviceId" not in header or len(header) < len(_METRICS) + 2:
        return None
    values = cells[-len(_METRICS):]
    return cells[header.index("DeviceId")], {field: number(v) for (_, field), v in zip(_METRICS, values, strict=True)}


class XpuSmiBackend(Backend):
    """Intel GPUs.

    Args:
        devices: xpu-smi device ids; None or empty: every device ``xpu-smi discovery`` lists.
        on_warning: told once if the dump process dies during an attempt.

    Raises:
        Unavailable: xpu-smi is not on PATH, fails, or lists no such device.
    """

    name = "xpu-smi"

    def __init__(self, devices: Sequence[str] | None = None, on_warning: Callable[[str], None] = lambda m: None):
        self.exe = shutil.which("xpu-smi")
        if self.exe is None:
            raise Unavailable("xpu-smi is not on PATH (install Intel XPU Manager)")
        listed = [str(d.get("device_id")) for d in self._json("discovery", "-j").get("device_list", [])
                  if isinstance(d, dict)]
        ids = list(devices) if devices else listed
        missing = [d for d in ids if d not in listed]
        if missing or not ids:
            raise Unavailable(f"xpu-smi has no device {missing[0]!r} (it lists {', '.join(listed) or 'none'})"
                              if missing else "xpu-smi lists no device")
        self.ids = tuple(ids)
        self.version = self._version()
        self.details = {d: self._json("discovery", "-d", d, "-j") for d in self.ids}
        self.on_warning = on_warning
        self._latest: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def _version(self) -> tuple[int, ...] | None:
        try:
            out = subprocess.run([self.exe, "--version"], capture_output=True, text=True, timeout=_TIMEOUT_S,
                                 check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return parse_version(out.stdout)

    def _json(self, *args: str) -> dict[str, Any]:
        try:
            out = subprocess.run([self.exe, *args], capture_output=True, text=True, timeout=_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise Unavailable(f"`xpu-smi {' '.join(args)}` failed: {e}") from None
        if out.returncode != 0:
            why = (out.stderr or out.stdout).strip().splitlines()
            raise Unavailable(f"`xpu-smi {' '.join(args)}` exited {out.returncode}: {why[0][:160] if why else ''}")
        try:
            data = json.loads(out.stdout)
        except ValueError:
            raise Unavailable(f"`xpu-smi {' '.join(args)}` did not print JSON") from None
        return data if isinstance(data, dict) else {}

    def devices(self) -> tuple[str, ...]:
        return self.ids

    def start(self, interval_s: float) -> None:
        with self._lock:
            self._latest = {}
        interval = str(max(1, round(interval_s)))  # xpu-smi dumps at whole seconds
        try:
            self._proc = subprocess.Popen(dump_command(self.exe, self.version, self.ids, interval),  # type: ignore[arg-type]
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        except OSError as e:
            self.on_warning(f"telemetry: `xpu-smi dump` could not start ({e}); no Intel GPU series")
            return
        self._reader = threading.Thread(target=self._follow, args=(self._proc,), daemon=True,
                                        name="milabox-xpu-smi-dump")
        self._reader.start()

    def _follow(self, proc: subprocess.Popen[str]) -> None:
        """Keep the latest row of each device, blocked on the dump's output until it ends."""
        stdout: IO[str] = proc.stdout  # type: ignore[assignment]
        header: list[str] = []
        other = ""  # the last line that is not data: the error message if the dump fails
        for line in stdout:
            if line.lstrip().startswith("Timestamp"):
                header = [c.strip() for c in line.split(",")]
                continue
            parsed = parse_dump_line(header, line) if header else None
            if parsed and parsed[0] in self.ids:
                with self._lock:
                    self._latest[parsed[0]] = parsed[1]
            elif line.strip():
                other = line.strip()
        code = proc.wait()
        if code > 0:  # stopped by stop() reads as a negative signal number
            self.on_warning(f"telemetry: `xpu-smi dump` exited {code}: {other[:160] or 'no message'}")

    def read(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            latest = {d: dict(v) for d, v in self._latest.items()}
        out = {}
        for d in self.ids:
            fields = latest.get(d, {})
            fields["memory_total_mb"] = number(self.details.get(d, {}).get("memory_physical_size_byte"), 2**-20)
            out[d] = fields
        return out

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)
            self._reader = None
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()

    def describe(self) -> dict[str, Any]:
        devices = []
        for d in self.ids:
            info = {k: v for k, v in self.details.get(d, {}).items() if isinstance(v, (str, int, float, bool))}
            devices.append({"id": d, "name": text(info.get("device_name")), "driver": text(info.get("driver_version")),
                            "firmware": text(info.get("gfx_firmware_version")),
                            "memory_total_mb": number(info.get("memory_physical_size_byte"), 2**-20),
                            "discovery": info})
        return {"devices": devices}
