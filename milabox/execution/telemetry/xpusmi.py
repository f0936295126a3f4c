"""Intel GPUs through the ``xpu-smi`` command (Intel XPU Manager).

``xpu-smi dump`` streams one CSV row per device per interval for as long as it runs, so one dump
process runs per attempt and a thread blocked on its output keeps each device's latest row; a sample
takes the latest rows (no process started per sample). Columns are matched by name, so a release that
adds or reorders metrics still parses. Device ids are xpu-smi device ids (those ZE_AFFINITY_MASK uses).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from typing import IO, Any

from .base import Backend, Unavailable, number, text

# dump metric ids: 0 utilization, 1 power, 2 frequency, 3 core temperature, 8 energy (cumulative), 18 memory used.
METRICS = "0,1,2,3,8,18"
_COLUMNS = (("GPU Utilization", "util_pct"), ("GPU Power", "power_w"), ("GPU Frequency", "sm_clock_mhz"),
            ("GPU Core Temperature", "temperature_c"), ("GPU Energy Consumed", "energy_j"),
            ("GPU Memory Used", "memory_used_mb"))
_TIMEOUT_S = 30


def parse_dump_line(header: list[str], line: str) -> tuple[str, dict[str, Any]] | None:
    """One ``xpu-smi dump`` CSV row as (device id, fields); None for a line that is not a data row.

    Args:
        header: the column names of the dump's first line, stripped.
        line: a data line.
    """
    cells = [c.strip() for c in line.split(",")]
    if len(cells) != len(header) or "DeviceId" not in header:
        return None
    row = dict(zip(header, cells, strict=True))
    fields = {}
    for prefix, field in _COLUMNS:
        column = next((h for h in header if h.startswith(prefix)), None)
        fields[field] = number(row[column]) if column else None
    return row["DeviceId"], fields


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
        self.details = {d: self._json("discovery", "-d", d, "-j") for d in self.ids}
        self.on_warning = on_warning
        self._latest: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

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
            self._proc = subprocess.Popen([self.exe, "dump", "-d", ",".join(self.ids), "-m", METRICS, "-i", interval],
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
            if parsed:
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
