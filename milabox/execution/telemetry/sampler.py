"""The sampler: a background thread writing one JSON line per device per interval while a container runs.

The thread sleeps on ``threading.Event.wait`` between samples (no busy loop), so the host stays idle
while the benchmark runs; a sample costs well under a millisecond of CPU on the psutil backend
(``scripts/telemetry_cost.py`` measures it). One sample is taken at start and one at stop, so
cumulative energy counters cover the container's whole life.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from .base import FIELDS, Backend


class Sampler:
    """Samples backends into a JSON-lines file from a background thread.

    Args:
        backends: what to read (each already open).
        path: the ``telemetry.jsonl`` file (appended to).
        interval_s: seconds between samples (> 0).
        devices: only these device labels of GPU backends (the attempt's devices); None: all. ``cpu`` is always kept.
        on_warning: told (once per backend) when a backend fails while sampling; it is then left out.

    Attributes:
        cpu_seconds: CPU time the sampling thread used (``time.thread_time``), set when it ends.
        samples: number of sampling rounds taken.
    """

    def __init__(self, backends: Sequence[Backend], path: Path, interval_s: float = 1.0,
                 devices: Sequence[str] | None = None, on_warning: Callable[[str], None] = lambda m: None):
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, not {interval_s}")
        self.backends, self.path, self.interval_s = list(backends), path, interval_s
        self.devices = set(devices) if devices else None
        self.on_warning = on_warning
        self.cpu_seconds = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started: list[Backend] = []  # to stop at the end
        self._live: list[Backend] = []  # still read: a backend that fails while sampling leaves this one

    def start(self) -> None:
        """Start the backends and the sampling thread (the first sample is taken at once)."""
        if self._thread is not None or not self.backends:
            return
        for backend in self.backends:
            try:
                backend.start(self.interval_s)
                self._started.append(backend)
                self._live.append(backend)
            except Exception as e:  # noqa: BLE001 (a telemetry failure must never fail the benchmark)
                self.on_warning(f"telemetry: {backend.name} could not start ({e}); no {backend.name} series")
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="milabox-telemetry", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Take a last sample, end the thread and stop the backends. Safe to call twice or without start."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 30)
        self._thread = None
        for backend in self._started:
            try:
                backend.stop()
            except Exception:  # noqa: BLE001,S110 (stopping must not mask how the container ended)
                pass
        self._started, self._live = [], []

    def __enter__(self) -> Sampler:  # noqa: PYI034 (not subclassed)
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        cpu0 = time.thread_time()
        try:
            with open(self.path, "a", encoding="utf-8") as out:
                # A schedule on a fixed grid: the interval does not drift by the time each sample takes.
                start = time.monotonic()
                while True:
                    self._sample(out)
                    delay = self.interval_s - (time.monotonic() - start) % self.interval_s
                    if self._stop.wait(delay):
                        self._sample(out)
                        break
        except OSError as e:
            self.on_warning(f"telemetry: cannot write {self.path} ({e}); no samples for this attempt")
        finally:
            self.cpu_seconds = time.thread_time() - cpu0

    def _sample(self, out: IO[str]) -> None:
        lines = []
        for backend in list(self._live):
            try:
                readings = backend.read()
            except Exception as e:  # noqa: BLE001 (one failing backend must not end the others' series)
                self.on_warning(f"telemetry: {backend.name} failed while sampling ({e}); its series stops here")
                self._live.remove(backend)
                continue
            now = round(time.time(), 3)
            for device, fields in readings.items():
                if self.devices is not None and device != "cpu" and device not in self.devices:
                    continue
                lines.append(json.dumps({"time": now, "device": device, "backend": backend.name,
                                         **{f: fields.get(f) for f in FIELDS}}))
        if lines:
            out.write("\n".join(lines) + "\n")
            out.flush()  # a host that dies keeps every sample written so far
        self.samples += 1
