#!/usr/bin/env python3
"""``make faults``: every fault a long vendor suite meets, for real on the engine, one table row each.

Scenarios: kill -9 of a benchmark container; the engine stopped and restarted mid-run (then ``--resume``);
SIGINT mid-run; out of memory (``--memory``); a hang past ``--timeout``; a corrupt line appended to a result
file; a malformed ``benchmark.toml``; an unknown vendor; a bundle with one byte flipped; a results pack cut short.

Columns: results kept (the run folder still reports what had finished), the failed row and its cause, the
containers of the scenario left on the engine, whether a traceback was printed, and the exit code (expected in
brackets). A row is clean when the exit code is the expected one, no container is left, no traceback is shown,
and a refused input is one ``milabox: error:`` line. Exit code: 0 when every row is clean, else 1.

The benchmarks are planted in a temporary folder (``--benchmarks-dir``) and built with ``milabox build``: thin
images FROM the CPU runtime image (``make images`` builds it). The engine restart stops the dockerd that serves
/var/run/docker.sock (SIGTERM; every container on it stops) and starts it again with scripts/engine.sh:
``--skip-engine-restart`` leaves it out on a machine others share.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

from milabox.cli.common import EXIT_ENGINE_LOST, EXIT_ERROR, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from milabox.engine import CONTAINER_LABEL
from milabox.engine.docker import Engine
from milabox.errors import EngineError, MilaboxError
from milabox.execution.attempt import RUN_DIR_LABEL
from milabox.rundir.layout import EVENTS_NAME
from milabox.rundir.read import load_run

PROJECT = Path(__file__).resolve().parent.parent
SOCKET = "/var/run/docker.sock"
#: The planted benchmarks (names unlikely to meet anyone else's): code, and the sizes' timeout.
QUICK, SLOW, HOG = "faults-quick", "faults-slow", "faults-hog"
REPORTS = 'import milabox_runtime as mr\n\n\ndef bench(run):\n    for _ in run.steps(items=1.0):\n        pass\n\n\n'
PLANTED = {
    QUICK: REPORTS + 'mr.main(bench, defaults={"unit": "items/s"})\n',
    # Long enough to be hit mid-run, short enough that a resume finishes it.
    SLOW: 'import time\n\nimport milabox_runtime as mr\n\n\ndef bench(run):\n    time.sleep(20)\n'
          '    for _ in run.steps(items=1.0):\n        pass\n\n\nmr.main(bench, defaults={"unit": "items/s"})\n',
    HOG: "hoard = []\nwhile True:\n    hoard.append(bytearray(2**24))\n",
}


@dataclass
class Row:
    """One scenario's outcome."""

    scenario: str
    kept: str = "-"
    failed: str = "-"
    left: int = 0
    traceback: bool = False
    code: int | None = None
    expected: int = EXIT_OK
    one_line: bool = True
    before: str = ""  # exit codes of earlier steps, for the exit column
    detail: str = ""  # the last lines the command printed on standard error, shown when the row is not clean

    @property
    def clean(self) -> bool:
        return self.code == self.expected and not self.left and not self.traceback and self.one_line


class Faults:
    """The scenarios, sharing one temporary folder and the planted benchmarks."""

    def __init__(self, root: Path):
        self.root = root
        self.benchmarks = root / "benchmarks"

    def milabox(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(self._command(args), capture_output=True, text=True, check=False, timeout=timeout)

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(self._command(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def _command(self, args) -> list[str]:
        return [sys.executable, "-m", "milabox", "--benchmarks-dir", str(self.benchmarks), *args]

    def plant(self) -> None:
        for name, code in PLANTED.items():
            (self.benchmarks / name).mkdir(parents=True)
            (self.benchmarks / name / "main.py").write_text(code)
            sizes = "warmup = 0\nsteps = 3\ntimeout_s = 120\n"
            (self.benchmarks / name / "benchmark.toml").write_text(
                f'description = "planted {name}"\nfamily = "test"\nunit = "items/s"\nweight = 1.0\n'
                f"[sizes.smoke]\n{sizes}[sizes.full]\n{sizes}")
        built = self.milabox("build", *PLANTED, "--vendor", "cpu", timeout=1800)
        if built.returncode != 0:
            sys.exit(f"faults: `milabox build` of the planted benchmarks failed:\n{built.stderr[-3000:]}")

    # ---- what a row reads -------------------------------------------------------------------------------------

    def left(self, engine: Engine) -> int:
        """Containers of this script's runs still on the engine (other users' are not counted)."""
        try:
            found = engine.client.containers.list(all=True, filters={"label": RUN_DIR_LABEL})
        except Exception:  # noqa: BLE001 (an engine that does not answer leaves nothing we can count)
            return 0
        return sum(1 for c in found if c.labels.get(RUN_DIR_LABEL, "").startswith(str(self.root.resolve())))

    def row(self, name: str, proc, expected: int, run_dir: Path | None = None, error: bool = False) -> Row:
        out = (proc.stdout or "") + (proc.stderr or "")
        row = Row(name, code=proc.returncode, expected=expected, traceback="Traceback" in out,
                  detail="\n".join((proc.stderr or "").strip().splitlines()[-8:]))
        if error:
            row.one_line = sum(ln.startswith("milabox: error:") for ln in proc.stderr.splitlines()) == 1
            row.failed = next((ln for ln in proc.stderr.splitlines() if ln.startswith("milabox: error:")), "-")
        if run_dir is not None and (run_dir / "manifest.json").exists():
            run = load_run(run_dir)
            ok = [a.benchmark for a in run.attempts if a.record.ok]
            row.kept = f"{len(run.attempts)} rows ({', '.join(ok) or 'none'} ok)"
            bad = [a for a in run.attempts if not a.record.ok]
            if bad:
                row.failed = "; ".join(f"{a.benchmark}: {a.record.cause}" for a in bad)
        return row

    def wait_container(self, engine: Engine, proc: subprocess.Popen, run_dir: Path, bench: str = SLOW,
                       timeout: float = 120):
        """The running container of ``bench`` in ``run_dir``, once it is under way."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            for c in engine.client.containers.list(filters={"label": RUN_DIR_LABEL}):
                if c.labels.get(RUN_DIR_LABEL) == str(run_dir.resolve()) and c.labels.get(CONTAINER_LABEL) == bench:
                    time.sleep(1)  # the benchmark is under way, not still starting
                    return c
            time.sleep(0.2)
        raise SystemExit(f"faults: no container of {run_dir} appeared: {proc.communicate()}")

    # ---- the scenarios ----------------------------------------------------------------------------------------

    def kill9(self, engine: Engine) -> Row:
        run_dir = self.root / "kill9"
        proc = self.start("run", QUICK, SLOW, "--vendor", "cpu", "--run-dir", str(run_dir))
        self.wait_container(engine, proc, run_dir).kill(signal="SIGKILL")
        out, err = proc.communicate(timeout=300)
        row = self.row("kill -9 of the benchmark container", _done(proc, out, err), EXIT_FAILED, run_dir)
        row.left = self.left(engine)
        return row

    def sigint(self, engine: Engine) -> Row:
        run_dir = self.root / "sigint"
        proc = self.start("run", QUICK, SLOW, "--vendor", "cpu", "--run-dir", str(run_dir))
        self.wait_container(engine, proc, run_dir)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        row = self.row("SIGINT mid-run", _done(proc, out, err), EXIT_INTERRUPTED, run_dir)
        row.left = self.left(engine)
        return row

    def engine_restart(self, engine: Engine) -> Row:
        run_dir = self.root / "engine"
        proc = self.start("run", QUICK, SLOW, "--vendor", "cpu", "--run-dir", str(run_dir))
        self.wait_container(engine, proc, run_dir)
        stop_engine()
        out, err = proc.communicate(timeout=300)
        lost = _done(proc, out, err)
        start_engine()
        resumed = self.milabox("run", "--resume", str(run_dir), timeout=600)
        row = self.row("engine stopped mid-run, restarted, --resume", resumed, EXIT_OK, run_dir)
        row.before = f"lost {lost.returncode} [{EXIT_ENGINE_LOST}], resume "
        row.traceback = row.traceback or "Traceback" in lost.stdout + lost.stderr
        if lost.returncode != EXIT_ENGINE_LOST:
            row.expected = -1  # not clean, whatever the resume did
        row.left = self.left(Engine())
        return row

    def simple_run(self, name: str, engine: Engine, bench: str, expected: int, *options: str) -> Row:
        run_dir = self.root / name.split()[0].lower()
        proc = self.milabox("run", bench, "--vendor", "cpu", "--run-dir", str(run_dir), *options)
        row = self.row(name, proc, expected, run_dir)
        row.left = self.left(engine)
        return row

    def corrupt_line(self, engine: Engine) -> Row:
        run_dir = self.root / "corrupt"
        ran = self.milabox("run", QUICK, "--vendor", "cpu", "--run-dir", str(run_dir))
        if ran.returncode != 0:
            return self.row("corrupt line appended to events.jsonl", ran, EXIT_OK, run_dir)
        with open(next(run_dir.glob(f"{QUICK}/*/{EVENTS_NAME}")), "a") as fh:
            fh.write('{"event": "summary", "rate": 1e9, "unit"\n')
        report = self.milabox("report", str(run_dir))
        row = self.row("corrupt line appended to events.jsonl", report, EXIT_OK, run_dir)
        warned = "corrupt line" in report.stdout + report.stderr
        row.failed = "warning: corrupt line, skipped" if warned else "no warning of the corrupt line"
        row.one_line = warned
        row.left = self.left(engine)
        return row

    def malformed_toml(self) -> Row:
        broken = self.root / "broken-benchmarks" / "faults-bad"
        broken.mkdir(parents=True)
        (broken / "main.py").write_text("")
        (broken / "benchmark.toml").write_text('description = "unclosed\nunit = "items/s"\n')
        proc = subprocess.run([sys.executable, "-m", "milabox", "--benchmarks-dir", str(broken.parent), "list"],
                              capture_output=True, text=True, check=False)
        return self.row("malformed benchmark.toml", proc, EXIT_ERROR, error=True)

    def unknown_vendor(self) -> Row:
        return self.row("unknown vendor", self.milabox("run", QUICK, "--vendor", "nope"), EXIT_ERROR, error=True)

    def flipped_bundle(self, engine: Engine) -> Row:
        bundle = self.root / "b.tar"
        made = self.milabox("bundle", QUICK, "--vendor", "cpu", "-o", str(bundle), "--no-dependencies", timeout=900)
        if made.returncode != 0:
            return self.row("bundle with one byte flipped", made, EXIT_ERROR, error=True)
        _flip(bundle, bundle.stat().st_size // 2)
        try:
            return self.row("bundle with one byte flipped", self.milabox("load", str(bundle), timeout=900),
                            EXIT_ERROR, error=True)
        finally:
            bundle.unlink()

    def truncated_pack(self) -> Row:
        pack = self.root / "results.tar"
        packed = self.milabox("results", "pack", str(self.root / "corrupt"), "-o", str(pack))
        if packed.returncode != 0:
            return self.row("results pack truncated", packed, EXIT_ERROR, error=True)
        with open(pack, "r+b") as fh:
            fh.truncate(pack.stat().st_size // 2)
        proc = self.milabox("results", "import", str(pack), "--into", str(self.root / "imported"))
        row = self.row("results pack truncated", proc, EXIT_ERROR, error=True)
        row.kept = "nothing imported" if not (self.root / "imported").exists() or not any(
            (self.root / "imported").iterdir()) else "a partial run folder was left"
        row.one_line = row.one_line and row.kept == "nothing imported"
        return row


def _done(proc: subprocess.Popen, out: str, err: str) -> subprocess.CompletedProcess:
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0x01]))


def _answers() -> bool:
    try:
        Engine(f"unix://{SOCKET}").version()
        return True
    except (EngineError, MilaboxError, OSError):
        return False


def _engine_pids() -> list[int]:
    """The dockerd processes serving SOCKET (a second dockerd with its own --host, e.g. a test's, is left alone)."""
    found = subprocess.run(["pidof", "dockerd"], capture_output=True, text=True, check=False).stdout.split()
    pids = []
    for pid in map(int, found):
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        hosts = [a.split("=", 1)[-1] for a in args if "unix://" in a]  # --host X, -H X, --host=X
        if not hosts or f"unix://{SOCKET}" in hosts:
            pids.append(pid)
    return pids


def stop_engine(timeout: float = 120) -> None:
    """SIGTERM to the engine, then wait until its socket stops answering."""
    for pid in _engine_pids():
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _answers() and time.monotonic() < deadline:
        time.sleep(0.5)
    while _engine_pids() and time.monotonic() < deadline:  # gone, so that engine.sh starts a fresh one
        time.sleep(0.5)


def start_engine() -> None:
    """The engine started again the way `make engine` starts it (scripts/engine.sh)."""
    subprocess.run(["bash", str(PROJECT / "scripts" / "engine.sh")], check=True, capture_output=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-engine-restart", action="store_true",
                        help="leave out the engine restart (default: run it; it stops every container on the engine)")
    args = parser.parse_args(argv)
    if not _answers():
        sys.exit(f"faults: no Docker engine answers on {SOCKET}; `make engine` starts one")
    engine = Engine()
    with tempfile.TemporaryDirectory(prefix="milabox-faults-") as tmp:
        faults = Faults(Path(tmp))
        faults.plant()
        scenarios: list[Callable[[], Row]] = [
            lambda: faults.kill9(engine),
            lambda: faults.sigint(engine),
            lambda: faults.simple_run("OOM (--memory 96m)", engine, HOG, EXIT_FAILED, "--memory", "96m"),
            lambda: faults.simple_run("hang past --timeout 5", engine, SLOW, EXIT_FAILED, "--timeout", "5"),
            lambda: faults.corrupt_line(engine),
            faults.malformed_toml,
            faults.unknown_vendor,
            lambda: faults.flipped_bundle(engine),
            faults.truncated_pack,
        ]
        if not args.skip_engine_restart:
            scenarios.insert(1, lambda: faults.engine_restart(engine))
        rows = []
        for scenario in scenarios:
            rows.append(scenario())
            print(f"  {rows[-1].scenario}: {'clean' if rows[-1].clean else 'NOT CLEAN'}", file=sys.stderr)
            if not rows[-1].clean:
                print(textwrap.indent(rows[-1].detail, "    | "), file=sys.stderr)
    if args.skip_engine_restart:
        rows.insert(1, Row("engine stopped mid-run, restarted, --resume", kept="skipped (--skip-engine-restart)",
                           code=None, expected=-1))
    table = [[r.scenario, r.kept, textwrap.shorten(r.failed, 70), r.left, "yes" if r.traceback else "no",
              "-" if r.code is None else f"{r.before}{r.code} [{r.expected}]",
              "skipped" if r.code is None else ("clean" if r.clean else "NOT CLEAN")] for r in rows]
    print(tabulate(table, headers=["scenario", "results kept", "failed row: cause", "containers left", "traceback",
                                   "exit [expected]", ""], tablefmt="github"))
    return 0 if all(r.clean or r.code is None for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
