"""Helpers that write run folders on disk in the layout of docs/results-format.md, as milabox and its
in-container runtime write them; used by the report, compare and HTML tests."""

from __future__ import annotations

import json

T0 = 1_700_000_000.0


def write_manifest(run_dir, benchmarks, **extra):
    run_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format": 1,
        "milabox_version": "0.1.0",
        "source_commit": "abc123",
        "host": "node1",
        "vendor": "cpu",
        "size": "smoke",
        "command": ["milabox", "run"],
        "benchmarks": benchmarks,
        "repeat": 1,
        "devices": ["0"],
        "images": {},
        "started": "2026-11-24T10:00:00+00:00",
        "ended": "2026-11-24T10:01:00+00:00",
        "status": "complete",
    }
    manifest.update(extra)
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    return run_dir


def write_attempt(
    run_dir,
    bench,
    repeat=0,
    device="0",
    *,
    status="ok",
    rate=None,
    steps=(),
    peak_mb=None,
    plan="per_device",
    unit="items/s",
    weight=1.0,
    cause=None,
    extra_lines=(),
    tail=None,
    record_text=None,
    meta=None,
    config=None,
    env=None,
    image_id="sha256:0",
):
    """One attempt folder with a record.json and an events.jsonl like the runtime writes.

    rate: the summary rate (no summary event when None). steps: per-step rates.
    extra_lines: raw lines appended after the known events. tail: raw text appended last,
    with no newline (a line cut short). record_text: raw record.json content instead.
    meta: fields replacing the meta event's. config, env: the container request's MILABOX_CONFIG and
    other environment variables (no container_request in the record when both are None).
    """
    folder = run_dir / bench / f"r{repeat}-d{device}"
    folder.mkdir(parents=True)
    events = [
        {"event": "start", "time": T0, "benchmark": bench, "size": "smoke", "pid": 1},
        {
            "event": "meta",
            "time": T0,
            "torch": "2.5",
            "device": {"type": "cpu", "name": "x", "count": 1},
            "python": "3.11",
            "hostname": "h",
            "threads": 4,
            "precision": "fp32",
            **(meta or {}),
        },
    ]
    for i, value in enumerate(steps):
        events.append({"event": "rate", "time": T0 + i, "step": i, "value": value, "unit": unit})
        events.append({"event": "loss", "time": T0 + i, "step": i, "value": 1.0 / (i + 1)})
    if peak_mb is not None:
        events.append({"event": "memory", "time": T0 + 10, "peak_mb": peak_mb})
    if rate is not None:
        events.append(
            {
                "event": "summary",
                "time": T0 + 11,
                "rate": rate,
                "unit": unit,
                "items": 100,
                "seconds": 100 / rate,
                "steps": len(steps),
                "warmup": 2,
            }
        )
    events.append({"event": "end", "time": T0 + 12, "status": "ok" if status == "ok" else "failed", "error": cause})
    text = "".join(json.dumps(e) + "\n" for e in events)
    text += "".join(line + "\n" for line in extra_lines)
    if tail is not None:
        text += tail
    (folder / "events.jsonl").write_text(text)
    (folder / "container.log").write_text("log\n")
    record = {
        "format": 1,
        "benchmark": bench,
        "group": bench.split("-")[0],
        "repeat": repeat,
        "device": device,
        "plan": plan,
        "unit": unit,
        "weight": weight,
        "size": "smoke",
        "image": "milabox/x:cpu-0.1.0",
        "image_id": image_id,
        "status": status,
        "cause": cause,
        "exit_code": 0 if status == "ok" else 1,
        "timed_out": False,
        "oom_killed": False,
        "wall_s": 12.3,
        "started": "2026-11-24T10:00:00+00:00",
        "ended": "2026-11-24T10:00:12+00:00",
    }
    if config is not None or env is not None:
        environment = {"MILABOX_CONFIG": json.dumps(config or {}), "MILABOX_RESULTS": "/results",
                       "MILABOX_BENCHMARK": bench, "HOME": "/tmp", **(env or {})}
        record["container_request"] = {"image": record["image"], "environment": environment, "network_mode": "none"}
    (folder / "record.json").write_text(record_text if record_text is not None else json.dumps(record))
    return folder


def write_telemetry(folder, start, stop, watts, device="cpu", counter=True):
    """One sample a second from start to stop (Unix s), constant power, with a cumulative counter."""
    lines = []
    t = start
    while t <= stop + 1e-9:
        lines.append({"time": t, "device": device, "backend": "cpu", "power_w": watts,
                      "energy_j": watts * (t - start) if counter else None, "utilization_pct": 50.0})
        t += 1.0
    (folder / "telemetry.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
