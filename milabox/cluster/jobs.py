"""Submitting a selection's scripts, following their jobs to their end and gathering every result into the run folder.

A job that died before or during an attempt still gets a failed record with Slurm's state as its cause: no benchmark
disappears from a run.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from milabox.cluster.client import JobState, Slurm
from milabox.cluster.options import SlurmOptions
from milabox.cluster.scripts import SLURM_DIR, STEP_NAME, JobScript
from milabox.definitions.vendors import Vendor
from milabox.engine import Engine, Exit
from milabox.errors import RunError
from milabox.execution import interrupts
from milabox.images.naming import benchmark_tag
from milabox.origin import host_facts
from milabox.rundir.layout import (
    ATTEMPT_DIR_RE,
    EVENTS_NAME,
    FORMAT_VERSION,
    LOG_NAME,
    MANIFEST_NAME,
    RECORD_NAME,
    write_json_atomic,
)
from milabox.rundir.outcome import classify, last_line


class SlurmReporter:
    """What submitting and following tells whoever watches; the default says nothing."""

    def submitted(self, benchmark: str, job_id: str, script: Path) -> None: ...
    def changed(self, benchmark: str, job_id: str, state: JobState, elapsed_s: float) -> None: ...
    def waiting(self, counts: dict[str, int], elapsed_s: float) -> None: ...
    def cancelling(self, job_ids: Sequence[str]) -> None: ...


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _manifest_jobs(scripts: Sequence[JobScript], options: SlurmOptions) -> dict[str, dict]:
    return {s.benchmark.name: {
        "job_id": None, "state": None, "exit_code": None, "script": f"{SLURM_DIR}/{s.name}", "nodes": s.nodes,
        "image": s.image, "group": s.benchmark.group, "plan": s.benchmark.plan, "unit": s.benchmark.unit,
        "weight": s.benchmark.weight, "timeout_s": s.benchmark.timeout_s(options.size)} for s in scripts}


def submit(scripts: Sequence[JobScript], vendor: Vendor, options: SlurmOptions, slurm: Slurm,
           engine: Engine | None = None, reporter: SlurmReporter | None = None) -> Path:
    """Write the scripts and the manifest into a new run folder and submit one job per script.

    A script that sbatch refuses becomes a failed record (its cause is sbatch's message); the others go on.

    Args:
        scripts: from :func:`job_scripts`.
        vendor: the vendor.
        options: the submission options.
        slurm: the Slurm clients.
        engine: a local engine to record image ids from, or None (a login node without one).
        reporter: told about each submission.

    Returns:
        The run folder; its manifest's ``slurm.jobs`` holds each benchmark's job id.

    Raises:
        RunError: the run folder already holds results.
    """
    reporter = reporter or SlurmReporter()
    run_dir = options.run_dir.resolve()
    if run_dir.exists() and any(run_dir.iterdir()):
        raise RunError(f"run folder {options.run_dir} already holds results; choose another --run-dir")
    (run_dir / SLURM_DIR).mkdir(parents=True, exist_ok=True)
    images = {}
    for s in scripts:
        info = engine.image(benchmark_tag(s.benchmark.group, vendor)) if engine is not None else None
        images[s.benchmark.group] = {"tag": s.image, "id": info.id if info else None}
    manifest = {
        "format": FORMAT_VERSION, **host_facts(), "vendor": vendor.name, "size": options.size,
        "command": list(options.command or sys.argv), "benchmarks": [s.benchmark.name for s in scripts],
        "repeat": 1, "devices": ["all"], "images": images, "started": _now(), "ended": None, "status": "running",
        "slurm": {"runtime": options.runtime, "partition": options.partition or None, "nodes": options.nodes,
                  "gpus_per_node": options.gpus_per_node, "registry": options.registry or None,
                  "jobs": _manifest_jobs(scripts, options)},
    }
    write_json_atomic(run_dir / MANIFEST_NAME, manifest)
    for s in scripts:
        path = run_dir / SLURM_DIR / s.name
        path.write_text(s.text)
        job = manifest["slurm"]["jobs"][s.benchmark.name]
        try:
            job["job_id"] = slurm.submit(path)
            job["state"] = "PENDING"
            reporter.submitted(s.benchmark.name, job["job_id"], path)
        except RunError as e:
            job.update(state="NOT_SUBMITTED", error=str(e))
        write_json_atomic(run_dir / MANIFEST_NAME, manifest)  # after each: a crash keeps the ids submitted so far
    return run_dir


def read_slurm_manifest(run_dir: Path) -> dict[str, Any]:
    """The manifest of a run folder made by :func:`submit` (not :func:`milabox.rundir.read.read_manifest`: this
    one is the raw JSON, with the ``slurm`` field that holds the jobs).

    Args:
        run_dir: the run folder.

    Returns:
        The manifest, as a JSON object.

    Raises:
        RunError: no manifest, or not one written by ``milabox slurm submit``.
    """
    path = run_dir / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise RunError(f"{path}: not a readable manifest ({e})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("slurm"), dict):
        raise RunError(f"{path}: not a run submitted with `milabox slurm submit` (no 'slurm' field)")
    return manifest


def follow(slurm: Slurm, jobs: Mapping[str, str], poll_s: float, reporter: SlurmReporter | None = None,
           sleep: Callable[[float], None] = time.sleep) -> dict[str, JobState]:
    """Wait until every job has ended, looking at the queue every ``poll_s`` seconds (sleeping in between).

    Args:
        slurm: the Slurm clients.
        jobs: job id -> benchmark name.
        poll_s: seconds between two looks.
        reporter: told about each state change, and every minute about the counts.
        sleep: how to wait.

    Returns:
        job id -> final state.
    """
    reporter = reporter or SlurmReporter()
    started = last_summary = time.monotonic()
    states: dict[str, JobState] = {}
    while True:
        # Jobs that ended are not asked about again: their state, exit code and times are final.
        pending = [j for j in jobs if j not in states or not states[j].terminal]
        elapsed = time.monotonic() - started
        for job_id, state in slurm.states(pending).items():
            if states.get(job_id, JobState("")).state != state.state:
                reporter.changed(jobs[job_id], job_id, state, elapsed)
            states[job_id] = state
        if all(s.terminal for s in states.values()) and len(states) == len(jobs):
            return states
        if time.monotonic() - last_summary >= 60:
            last_summary = time.monotonic()
            counts: dict[str, int] = {}
            for s in states.values():
                counts[s.state] = counts.get(s.state, 0) + 1
            reporter.waiting(counts, elapsed)
        sleep(poll_s)


def _job_cause(bench: str, job: dict, state: JobState, run_dir: Path, when: str) -> str:
    what = f"slurm job {job.get('job_id')} ended {state.state}"
    if state.exit_code is not None:
        what += f" (exit code {state.exit_code})"
    if state.state == "TIMEOUT":
        what += ": the job's --time limit was reached"
    out = run_dir / SLURM_DIR / f"{bench}-{job.get('job_id')}.out"
    tail = last_line(out)
    return f"{what} {when}" + (f"; {out.relative_to(run_dir)}: {tail}" if tail else "")


def _wall_s(started: str | None, ended: str | None) -> float | None:
    try:
        return max(0.0, (dt.datetime.fromisoformat(ended or "") - dt.datetime.fromisoformat(started or ""))
                   .total_seconds())
    except ValueError:
        return None


def _base_record(bench: str, job: dict, manifest: dict, attempt: str) -> dict:
    m = ATTEMPT_DIR_RE.match(attempt)
    return {"format": FORMAT_VERSION, "benchmark": bench, "group": job["group"],
            "repeat": int(m.group(1)) if m else 0, "device": m.group(2) if m else "all", "plan": job["plan"],
            "unit": job["unit"], "weight": job["weight"], "size": manifest.get("size"), "image": job["image"],
            "image_id": (manifest.get("images", {}).get(job["group"]) or {}).get("id"), "timeout_s": job["timeout_s"]}


def _step_record(bench: str, job: dict, manifest: dict, folder: Path, state: JobState, run_dir: Path) -> dict:
    """The record of an apptainer/pyxis attempt, from its slurm-step.json, events and log."""
    record = _base_record(bench, job, manifest, folder.name)
    try:
        step = json.loads((folder / STEP_NAME).read_text())
    except (OSError, ValueError):
        step = None
    if not isinstance(step, dict) or not isinstance(step.get("exit_code"), int):
        return {**record, "status": "failed", "cause": _job_cause(bench, job, state, run_dir, "during this attempt"),
                "rate": None, "exit_code": None, "timed_out": state.state == "TIMEOUT",
                "oom_killed": state.state == "OUT_OF_MEMORY", "wall_s": _wall_s(state.started, state.ended),
                "started": state.started, "ended": state.ended}
    code = step["exit_code"]
    # 124: `timeout` stopped the container at the benchmark's time limit (the scripts run it under `timeout`).
    exit = Exit(code=code, timed_out=code == 124, oom_killed=state.state == "OUT_OF_MEMORY")
    status, cause, rate = classify(exit, folder / EVENTS_NAME, folder / LOG_NAME, job["timeout_s"])
    return {**record, "status": status, "cause": cause, "rate": rate, "exit_code": code, "timed_out": exit.timed_out,
            "oom_killed": exit.oom_killed, "wall_s": _wall_s(step.get("started"), step.get("ended")),
            "started": step.get("started"), "ended": step.get("ended")}


def gather(run_dir: Path, manifest: dict, states: Mapping[str, JobState]) -> list[Path]:
    """Make sure every benchmark of a finished submission has a final record in the run folder.

    Records the jobs wrote (docker runtime) are kept, with the job's id and state added; records a killed job
    left ``running`` become failed with Slurm's state as their cause; apptainer/pyxis attempts get their
    record from ``slurm-step.json``; a job that left no attempt at all gets one failed ``r0-dall`` record.

    Args:
        run_dir: the run folder.
        manifest: its manifest (``slurm.jobs`` gives each benchmark's job and metadata).
        states: job id -> final state.

    Returns:
        The record files written.
    """
    written = []
    for bench, job in manifest["slurm"]["jobs"].items():
        state = states.get(job.get("job_id") or "") or JobState(job.get("state") or "UNKNOWN")
        slurm_info = {"job_id": job.get("job_id"), "state": state.state, "runtime": manifest["slurm"]["runtime"]}
        folders = sorted(p for p in (run_dir / bench).glob("r*-d*") if p.is_dir() and ATTEMPT_DIR_RE.match(p.name))
        for folder in folders:
            path = folder / RECORD_NAME
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                record = None
            if not isinstance(record, dict):
                record = _step_record(bench, job, manifest, folder, state, run_dir)
            elif record.get("status") == "running":
                record.update(status="failed", cause=_job_cause(bench, job, state, run_dir, "during this attempt"),
                              timed_out=state.state == "TIMEOUT", ended=state.ended or _now())
            elif record.get("slurm", {}) | slurm_info == record.get("slurm"):
                continue  # final, and already says which job wrote it
            record["slurm"] = {**record.get("slurm", {}), **slurm_info}
            write_json_atomic(path, record)
            written.append(path)
        if not folders:
            folder = run_dir / bench / "r0-dall"
            folder.mkdir(parents=True, exist_ok=True)
            when = "before the benchmark ran" if job.get("job_id") else ""
            cause = _job_cause(bench, job, state, run_dir, when) if job.get("job_id") else job.get("error", "")
            record = {**_base_record(bench, job, manifest, folder.name), "status": "failed",
                      "cause": cause or "the job left no results", "rate": None, "exit_code": state.exit_code,
                      "timed_out": state.state == "TIMEOUT", "oom_killed": state.state == "OUT_OF_MEMORY",
                      "wall_s": _wall_s(state.started, state.ended), "started": state.started, "ended": state.ended,
                      "slurm": slurm_info}
            write_json_atomic(folder / RECORD_NAME, record)
            written.append(folder / RECORD_NAME)
    return written


def collect(run_dir: Path, slurm: Slurm, poll_s: float = 5.0, reporter: SlurmReporter | None = None,
            sleep: Callable[[float], None] = time.sleep) -> Path:
    """Follow a submission's jobs to their end, gather their results and finish the manifest.

    Ctrl-C (or SIGTERM) cancels the jobs still queued or running; their attempts are recorded as failed
    with Slurm's state and the manifest says ``interrupted``.

    Args:
        run_dir: a run folder made by :func:`submit`.
        slurm: the Slurm clients.
        poll_s: seconds between two looks at the queue.
        reporter: told about state changes.
        sleep: how to wait.

    Returns:
        The run folder.

    Raises:
        RunError: not a run folder made by ``milabox slurm submit``.
    """
    manifest = read_slurm_manifest(run_dir)
    jobs = {j["job_id"]: bench for bench, j in manifest["slurm"]["jobs"].items() if j.get("job_id")}
    status = "complete"
    with interrupts.scope() as stop:
        try:
            with stop.interruptible():
                states = follow(slurm, jobs, poll_s, reporter, sleep)
        except KeyboardInterrupt:
            status = "interrupted"
            (reporter or SlurmReporter()).cancelling(list(jobs))
            slurm.cancel(list(jobs))
            states = _settled(slurm, jobs, sleep, stop)
        for job_id, bench in jobs.items():
            job = manifest["slurm"]["jobs"][bench]
            job.update(state=states[job_id].state, exit_code=states[job_id].exit_code)
        gather(run_dir, manifest, states)
        manifest.update(ended=_now(), status=status)
        write_json_atomic(run_dir / MANIFEST_NAME, manifest)
    return run_dir


def _settled(slurm: Slurm, jobs: Mapping[str, str], sleep: Callable[[float], None], stop: interrupts.StopRequest,
             wait_s: float = 90) -> dict[str, JobState]:
    """States after a cancel: wait until Slurm has ended every job (COMPLETING lasts until their processes are
    gone, up to Slurm's KillWait of 30 s plus the containers' own stop), so the records they write are final.
    A second stop signal ends the wait: what is there is gathered."""
    states: dict[str, JobState] = {}
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and stop.signals < 2:
        states.update(slurm.states([j for j in jobs if j not in states or not states[j].terminal]))
        if all(s.terminal for s in states.values()):
            break
        sleep(1)
    return {j: states.get(j, JobState("CANCELLED")) for j in jobs}
