"""``Run``: one benchmark's measurement, written as events.jsonl (docs/results-format.md)."""

from __future__ import annotations

import contextlib
import math
import os
import platform
import random
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn, Self

from . import device as _dev
from . import distributed as _dist
from . import jaxdev as _jax
from . import precision as _prec
from .errors import NonFiniteLoss, NoRate, Terminated
from .events import EventWriter

LOOP_DEFAULTS: dict[str, Any] = {"warmup": 3, "steps": 20, "min_seconds": 0, "max_seconds": 600}
# Kinds the runtime writes itself; emit() refuses them so that the contract cannot be broken.
CORE_KINDS = frozenset({"start", "meta", "rate", "loss", "memory", "summary", "end"})


def _count(config: Mapping[str, Any], key: str, minimum: int) -> int:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise ValueError(f"config {key!r} must be an integer, not {value!r}")
    if value < minimum:
        raise ValueError(f"config {key!r} must be >= {minimum}, not {value!r}")
    return int(value)


def _one_line(exc: BaseException) -> str:
    """``ExcType: message`` on one line, short enough for a record's ``cause``."""
    message = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text if len(text) <= 500 else text[:497] + "..."


class _NoWriter:
    """What ranks other than 0 write: nothing (rank 0 speaks for the whole job)."""

    def write(self, kind: str, **fields: Any) -> None:
        pass

    def close(self) -> None:
        pass


class Run:
    """One benchmark run: loop control, timing, validity gates and the events file.

    Use as a context manager: entering writes ``start`` and ``meta``; leaving writes ``memory``,
    ``summary`` (only on success) and ``end``.

    In a job of several processes (torchrun) only global rank 0 writes events; the other ranks run
    the same loop and still fail (raise) on their own errors. Item counts are the job's: pass the
    global batch (per-rank batch x world size) to :meth:`steps`.

    With ``framework="jax"`` the device, its facts and peak memory come from jax (torch is never imported), and
    each measured step must hand what it computed to :meth:`ready`: the clock is read once that is computed.
    """

    def __init__(self, config: Mapping[str, Any] | None = None,
                 results_dir: str | os.PathLike[str] = ".", device: str | None = None,
                 defaults: Mapping[str, Any] | None = None, rank: int = 0, world_size: int = 1,
                 nnodes: int = 1, framework: str = "torch") -> None:
        """Prepare a run; nothing is written until it is entered.

        Args:
            config: benchmark parameters (what the host passes as MILABOX_CONFIG).
            results_dir: folder that receives events.jsonl.
            device: "cpu", "cuda" or "xpu" to force a device; None auto-detects.
            defaults: values for keys the config lacks (benchmark-specific defaults, e.g. unit).
            rank: this process' global rank; only rank 0 writes events.
            world_size: processes in the job.
            nnodes: nodes in the job.
            framework: ``torch`` (default) or ``jax``: what the benchmark computes with (see :meth:`ready`).

        Raises:
            ValueError: bad loop controls (warmup < 0, steps < 1, max_seconds <= 0, min_seconds < 0 or above
                max_seconds), precision, framework, or rank/world_size/nnodes.
        """
        self.framework = _jax.check_framework(framework)
        if not (0 <= rank < world_size) or nnodes < 1 or nnodes > world_size:
            raise ValueError(f"invalid layout: rank {rank}, world_size {world_size}, nnodes {nnodes}")
        self.rank, self.world_size, self.nnodes = rank, world_size, nnodes
        cfg = {**LOOP_DEFAULTS, **(defaults or {}), **(config or {})}
        self.warmup = _count(cfg, "warmup", 0)
        self.num_steps = _count(cfg, "steps", 1)
        self.max_seconds = float(cfg["max_seconds"])
        if not self.max_seconds > 0:  # also rejects NaN
            raise ValueError(f"config 'max_seconds' must be > 0, not {cfg['max_seconds']!r}")
        self.min_seconds = float(cfg["min_seconds"])
        if not 0 <= self.min_seconds <= self.max_seconds:
            raise ValueError(f"config 'min_seconds' must be >= 0 and <= max_seconds ({self.max_seconds:g}), "
                             f"not {cfg['min_seconds']!r}")
        self.precision = _prec.check_precision(cfg.get("precision"))
        self.unit = str(cfg.get("unit") or "items/s")
        self.config = cfg
        self.results_dir = Path(results_dir)
        self._forced_device = device
        self._device_type: str | None = None
        self._device: Any = None
        self._writer: EventWriter | _NoWriter | None = None
        self._entered = False
        self._step: int | None = None  # the step in progress, None outside one
        self._step_items: float | None = None  # set by items() for the step in progress
        self._ready: list[Any] = []  # what ready() was handed in the step in progress
        self._stepping = False
        self.measured_steps = 0
        self.measured_items = 0.0
        self.measured_seconds = 0.0
        self.warmup_steps = 0
        self._stopped_by = "loop left early"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None,
                 defaults: Mapping[str, Any] | None = None, framework: str = "torch") -> Run:
        """Build a run from MILABOX_CONFIG, MILABOX_RESULTS, MILABOX_DEVICE and torchrun's variables.

        RANK, WORLD_SIZE and GROUP_WORLD_SIZE (nodes), set by torchrun, make the run rank-aware;
        without them it is a single process.

        Args:
            environ: the environment to read (default: os.environ).
            defaults: values for keys the config lacks.
            framework: ``torch`` or ``jax`` (see :class:`Run`).

        Returns:
            A Run, not yet entered.

        Raises:
            ValueError: MILABOX_CONFIG is not valid JSON, or its values (or torchrun's) are invalid.
            TypeError: MILABOX_CONFIG is JSON but not an object.
        """
        env = os.environ if environ is None else environ
        rank, world_size, _, nnodes = _dist.world(env)
        return cls(config=_dist.config_from_env(env), results_dir=env.get("MILABOX_RESULTS") or ".",
                   device=env.get("MILABOX_DEVICE") or None, defaults=defaults, rank=rank,
                   world_size=world_size, nnodes=nnodes, framework=framework)

    # --- device and precision ------------------------------------------------------------------

    @property
    def device_type(self) -> str:
        """ "cpu", "cuda" or "xpu" (resolved on first use; torch is not needed for "cpu"; jax's in a jax run)."""
        if self._device_type is None:
            resolve = _jax.resolve_device_type if self.framework == "jax" else _dev.resolve_device_type
            self._device_type = resolve(self._forced_device)
        return self._device_type

    @property
    def device(self) -> Any:
        """The torch.device to run on (imports torch); in a jax run, the jax device."""
        if self._device is None:
            self._device = _jax.first_device() if self.framework == "jax" else _dev.make_device(self.device_type)
        return self._device

    @property
    def dtype(self) -> Any:
        """torch dtype for tensors the benchmark creates: float32, float16 or bfloat16."""
        return _prec.storage_dtype(_dev.import_torch(required=True), self.precision)

    @property
    def autocast_dtype(self) -> Any:
        """torch dtype that :meth:`autocast` computes in, or None when it does nothing."""
        return _prec.autocast_dtype(_dev.import_torch(required=True), self.precision)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Context for the forward pass: torch.autocast for fp16/bf16/tf32-fp16, else a no-op.

        Returns:
            A context manager.
        """
        dtype = self.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return _dev.import_torch(required=True).autocast(device_type=self.device_type, dtype=dtype)

    def seed(self, n: int) -> None:
        """Seed Python's random, torch (all devices) and numpy if it is already imported.

        Args:
            n: the seed.
        """
        random.seed(n)
        torch = _dev.import_torch()
        if torch is not None:
            torch.manual_seed(n)  # also seeds every cuda/xpu device
        numpy = sys.modules.get("numpy")
        if numpy is not None:
            numpy.random.seed(n % 2**32)

    # --- context: start/meta on enter, memory/summary/end on exit -------------------------------

    def __enter__(self) -> Self:
        if self._entered:
            raise RuntimeError("a Run can be entered only once")
        self._entered = True
        self._writer = EventWriter(self.results_dir) if self.rank == 0 else _NoWriter()
        cfg = self.config
        # The vendor too, so a folder written by a plain `docker run` says where it ran (milabox results adopt).
        self._write("start", benchmark=cfg.get("benchmark"), size=cfg.get("size"), pid=os.getpid(),
                    group=cfg.get("group"), vendor=os.environ.get("MILABOX_VENDOR") or None,
                    process_started=process_started())
        try:
            torch = None if self.framework == "jax" else _dev.import_torch()
            if torch is not None:
                _prec.apply_tf32(torch, self.precision)
            self._write("meta", **self._meta(torch))
        except BaseException as exc:
            self._finish(exc)
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        self._finish(exc)
        return False  # re-raise whatever the block raised

    def _meta(self, torch: Any) -> dict[str, Any]:
        kind = self.device_type
        if torch is not None and kind != "cpu":
            self.device  # noqa: B018 - select the device first, so the info describes it
        jax = {"framework": "jax", "jax": _jax.version()} if self.framework == "jax" else {}
        return {
            **jax,
            "torch": None if torch is None else torch.__version__,
            "device": _jax.device_info(kind) if jax else _dev.device_info(kind),
            "python": platform.python_version(),
            "hostname": socket.gethostname(),
            "threads": torch.get_num_threads() if torch is not None else _dev.cpu_cores(),
            "precision": self.precision,
            "cuda": getattr(getattr(torch, "version", None), "cuda", None),
            "hip": getattr(getattr(torch, "version", None), "hip", None),
            "world_size": self.world_size,
            "nnodes": self.nnodes,
        }

    def _finish(self, exc: BaseException | None) -> None:
        """Write memory, summary and end, close the file; raise NoRate when nothing was measured."""
        failure: BaseException | None = None
        if exc is not None:
            status, error = "failed", _one_line(exc)
        elif self.measured_steps == 0:
            status, error = "failed", "no rate reported"
            failure = NoRate(error)
        else:
            status, error = "ok", None
        # A broken device (e.g. after a CUDA error) must not hide the real outcome.
        with contextlib.suppress(Exception):
            if self._device_type is not None:
                peak = _jax.peak_memory_mb if self.framework == "jax" else _dev.peak_memory_mb
                self._write("memory", peak_mb=round(peak(self._device_type), 1))
        if status == "ok":
            self._write("summary", rate=self.measured_items / self.measured_seconds, unit=self.unit,
                        items=self.measured_items, seconds=self.measured_seconds,
                        steps=self.measured_steps, warmup=self.warmup_steps,
                        stopped_by=self._stopped_by)
        self._write("end", status=status, error=error)
        if self._writer is not None:
            self._writer.close()
        if status == "ok" and self.rank == 0:
            print(f"milabox_runtime: {self.config.get('benchmark')}: "
                  f"{self.measured_items / self.measured_seconds:.4g} {self.unit} over "
                  f"{self.measured_steps} steps ({self.measured_seconds:.3g} s)", flush=True)
        if failure is not None:
            raise failure

    # --- the measured loop -----------------------------------------------------------------------

    def steps(self, items: float | None = None) -> Iterator[int]:
        """Run warm-up then measured steps; each measured step writes a ``rate`` event.

        Warm-up steps yield -warmup .. -1 and are not timed; measured steps yield 0, 1, ... (the
        same numbers as their ``rate`` and ``loss`` events). The device is synchronised before
        each clock read; in a jax run, the clock waits for what the step handed to :meth:`ready` instead. Stops once both ``steps`` measured steps and ``min_seconds`` of measured
        time are reached, or once measured time reaches ``max_seconds`` (the hard cap), whichever
        comes first.

        Args:
            items: work done by each step, in the run's unit times seconds (e.g. samples, or
                TFLOP for a TFLOPS unit). :meth:`items` overrides it for one step.

        Yields:
            Step numbers.

        Raises:
            RuntimeError: not inside ``with run:``, or steps() is already running.
            ValueError: a step has no item count (neither ``items`` nor :meth:`items`), or a
                negative or non-finite one.
            RuntimeError: a measured step of a jax run handed nothing to :meth:`ready`.
        """
        if self._writer is None or not self._entered:
            raise RuntimeError("Run.steps() must be used inside `with run:`")
        if self._stepping:
            raise RuntimeError("Run.steps() is already running")
        self._stepping = True
        jax = self.framework == "jax"
        sync = (lambda kind: None) if jax else _dev.synchronize  # jax: the step's own outputs are waited for
        kind = self.device_type
        try:
            for step in range(-self.warmup, 0):
                self._begin(step)
                yield step
                self._wait_ready(required=False)  # warm-up work must not spill into the first measured step
                self._items_of_step(items)  # validate now rather than after the warm-up
                self.warmup_steps += 1
            step = 0
            while True:
                done = self.measured_steps >= self.num_steps and self.measured_seconds >= self.min_seconds
                over = self.measured_seconds >= self.max_seconds
                end = done or over
                if self.world_size > 1:  # every rank must stop at the same step: rank 0 decides
                    end = _dist.agree_with_rank0(end, self)
                if end:
                    self._stopped_by = ("max_seconds" if not done else
                                        "min_seconds" if self.measured_steps > self.num_steps else "steps")
                    break
                self._begin(step)
                sync(kind)
                t0 = time.perf_counter()
                yield step
                sync(kind)
                self._wait_ready(required=jax)
                seconds = time.perf_counter() - t0
                n = self._items_of_step(items)
                seconds = max(seconds, 1e-9)  # a clock tick of 0 must not divide by zero
                self.measured_steps += 1
                self.measured_items += n
                self.measured_seconds += seconds
                self._write("rate", step=step, value=n / seconds, unit=self.unit, items=n,
                            seconds=seconds)
                step += 1
        finally:
            self._step = None
            self._stepping = False

    def _begin(self, step: int) -> None:
        self._step = step
        self._step_items = None
        self._ready = []

    def ready(self, out: Any) -> Any:
        """Hand the step's results (any pytree of jax arrays, e.g. the new train state and the loss) to the clock:
        the step ends once they are computed (``jax.block_until_ready``). Required in every measured step of a jax
        run, whose work is dispatched asynchronously; a no-op in a torch run (the device is synchronised).

        Args:
            out: what the step computed.

        Returns:
            ``out``, unchanged.

        Raises:
            RuntimeError: called outside a step.
        """
        if self._step is None:
            raise RuntimeError("Run.ready() must be called inside a step of Run.steps()")
        if self.framework == "jax":
            self._ready.append(out)
        return out

    def _wait_ready(self, required: bool) -> None:
        outs, self._ready = self._ready, []
        if required and not outs:
            raise RuntimeError("a jax step must hand what it computed to run.ready(...): jax dispatches "
                               "asynchronously, and the step's clock waits for those results")
        for out in outs:
            _jax.block_until_ready(out)

    def _items_of_step(self, default: float | None) -> float:
        n = self._step_items if self._step_items is not None else default
        if n is None:
            raise ValueError("no item count for the step: pass items= to Run.steps() "
                             "or call run.items(n) in every step")
        n = float(n)
        if not (math.isfinite(n) and n >= 0):
            raise ValueError(f"item count must be finite and >= 0, not {n}")
        return n

    def items(self, n: float) -> None:
        """Set the item count of the step in progress (when it varies from step to step).

        Args:
            n: items this step processed, in the run's unit times seconds.

        Raises:
            RuntimeError: called outside a step.
        """
        if self._step is None:
            raise RuntimeError("Run.items() must be called inside a step of Run.steps()")
        self._step_items = n

    def loss(self, value: Any) -> float:
        """Report the step's loss; a NaN or infinite loss fails the benchmark.

        Args:
            value: a float or a 0-d tensor (read with ``.item()``, which synchronises).

        Returns:
            The loss as a float.

        Raises:
            NonFiniteLoss: the loss is NaN or infinite.
        """
        v = float(value.item() if hasattr(value, "item") else value)
        step = self._step
        if not math.isfinite(v):
            where = f"step {step}" + (" (warm-up)" if step is not None and step < 0 else "")
            raise NonFiniteLoss(f"non-finite loss at {where}: {v}")
        self._write("loss", step=step, value=v)
        return v

    def emit(self, kind: str, **fields: Any) -> None:
        """Write a benchmark-specific event (readers ignore kinds they do not know).

        Args:
            kind: the event kind; not one the runtime writes itself.
            **fields: JSON-serialisable, finite values.

        Raises:
            ValueError: ``kind`` is a core kind, or a value is not finite.
            RuntimeError: not inside ``with run:``.
        """
        if kind in CORE_KINDS:
            raise ValueError(f"event kind {kind!r} is written by the runtime itself")
        self._write(kind, **fields)

    def _write(self, kind: str, **fields: Any) -> None:
        if self._writer is None:
            raise RuntimeError("events can only be written inside `with run:`")
        self._writer.write(kind, **fields)


def process_started(stat: str = "/proc/self/stat") -> float | None:
    """When this process began (Unix time, to the kernel's 10 ms tick), before the interpreter and any import.

    The process's start time since boot (``/proc/self/stat`` field 22, kept across ``exec``: in a container
    this is its first process) placed on the wall clock through ``CLOCK_BOOTTIME``, the clock it counts in.
    So the host can tell its own orchestration (creating, starting, removing a container) from the
    benchmark's start-up (interpreter, imports, model building), which the native runtime pays too.

    Args:
        stat: the process's stat file (default: this process's).

    Returns:
        The Unix time, or None where there is no such file (not Linux).
    """
    try:
        with open(stat, encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # the name in parentheses may hold spaces
        since_boot = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22 counts from 1, after pid and name
        return round(time.time() - (time.clock_gettime(time.CLOCK_BOOTTIME) - since_boot), 3)
    except (OSError, IndexError, ValueError, AttributeError):
        return None


def _raise_terminated(signum: int, frame: Any) -> NoReturn:
    raise Terminated(f"received signal {signal.Signals(signum).name}")


def main(fn: Callable[[Run], Any], defaults: Mapping[str, Any] | None = None, framework: str = "torch") -> NoReturn:
    """Run ``fn(run)`` inside a run built from the environment, then exit with a status.

    The exit code is 0 only when the run succeeded (a rate was measured, nothing raised); the
    traceback of any failure goes to stderr. SIGTERM is turned into :class:`Terminated` so that a
    stopped container still writes its ``end`` event.

    Args:
        fn: the benchmark body; it receives the entered Run.
        defaults: values for keys MILABOX_CONFIG lacks (see :class:`Run`).
        framework: ``torch`` (default) or ``jax`` (see :class:`Run`).

    Raises:
        SystemExit: always; code 0 on success, 143 on SIGTERM, 130 on Ctrl-C, 1 otherwise.
    """
    with contextlib.suppress(ValueError):  # signal handlers can only be set in the main thread
        signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        run = Run.from_env(defaults=defaults, framework=framework)
        with run:
            fn(run)
    except BaseException as exc:  # noqa: BLE001 - every failure must become a non-zero exit
        traceback.print_exc()
        sys.stderr.flush()
        code = 143 if isinstance(exc, Terminated) else 130 if isinstance(exc, KeyboardInterrupt) else 1
        raise SystemExit(code) from None
    raise SystemExit(0)
