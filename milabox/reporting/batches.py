"""The unit of replication of a benchmark: its attempts, or the batches of attempts that ran together.

A per_device benchmark's attempts of one repeat run at the same time, one container per device; each record
names them (``concurrent``). Such a batch is one measurement of the node: its rate is the sum of its attempts'
rates, a failed device adding 0. Records without ``concurrent`` (older runs), and batches of one attempt
(all_devices plans, one device), are their own replicate, as before. Scoring is in milabox.reporting.summary.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from milabox.rundir.model import AttemptResult


@dataclass(frozen=True)
class Replicate:
    """One measurement of a benchmark: an attempt, or a batch of attempts that ran together.

    Attributes:
        ok: at least one of its attempts succeeded.
        rate: the sum of its successful attempts' rates (the node's rate for a batch), None when none has one.
        failed: its attempts whose status is not ``ok`` (a batch with 0 < failed < attempts is partly failed).
        attempts: how many attempts it holds.
        measured: its successful attempts with a rate (what its energy is read from).
    """

    ok: bool
    rate: float | None
    failed: int = 0
    attempts: int = 1
    measured: tuple[AttemptResult, ...] = field(default=(), compare=False, repr=False)


def concurrent(attempt: AttemptResult) -> tuple[str, ...] | None:
    """The device labels of the batch an attempt ran in (its record's ``concurrent``), or None when not recorded.

    Args:
        attempt: the attempt.

    Returns:
        The labels, or None (older runs, an unreadable record, a value that is not a list).
    """
    value = attempt.record.raw.get("concurrent") if attempt.error is None else None
    return tuple(str(v) for v in value) if isinstance(value, list) and value else None


def batched(attempts: Sequence[AttemptResult]) -> bool:
    """Whether a benchmark's unit of replication is the batch: every readable record has ``concurrent`` and at
    least one batch holds more than one device.

    Args:
        attempts: one benchmark's attempts.

    Returns:
        True for batches, False for attempts (today's meaning for older runs and single-device batches).
    """
    labels = [concurrent(a) for a in attempts if a.error is None]
    return bool(labels) and all(labels) and any(len(c) > 1 for c in labels if c)


def replicates(attempts: Sequence[AttemptResult]) -> list[Replicate]:
    """A benchmark's replicates: its batches when ``batched``, else one per attempt.

    A batch is the attempts of one run folder and repeat that name the same ``concurrent``; an unreadable
    attempt joins the batch of its run and repeat that lists its device (else it is a failed replicate).

    Args:
        attempts: one benchmark's attempts (possibly pooled from several run folders).

    Returns:
        The replicates, in the order their first attempt comes.
    """
    if not batched(attempts):
        return [Replicate(a.record.ok, a.rate if a.record.ok else None, int(not a.record.ok),
                          measured=(a,) if a.record.ok and a.rate is not None else ()) for a in attempts]
    groups: dict[tuple[Path, int, tuple[str, ...]], list[AttemptResult]] = {}
    for a in attempts:
        labels = concurrent(a)
        key = (a.path.parent.parent, a.record.repeat, labels or ())
        if labels is None:  # unreadable: find the batch it belonged to
            key = next((k for k in groups if k[:2] == key[:2] and a.record.device in k[2]), key)
        groups.setdefault(key, []).append(a)
    out = []
    for group in groups.values():
        measured = tuple(a for a in group if a.record.ok and a.rate is not None)
        failed = sum(1 for a in group if not a.record.ok)
        out.append(Replicate(failed < len(group), sum(a.rate for a in measured) if measured else None,  # type: ignore[misc]
                             failed, len(group), measured))
    return out


def multiplier(attempts: Sequence[AttemptResult]) -> int:
    """M of the score rule (milabox.reporting.summary): what turns perf into the node's rate.

    Args:
        attempts: one benchmark's attempts.

    Returns:
        The distinct devices of per_device attempts that did not run together (older runs), else 1 (batches
        already sum the node's devices; all_devices plans use them all in one attempt).
    """
    readable = [a.record for a in attempts if a.error is None]
    if not readable or readable[0].plan != "per_device" or batched(attempts):
        return 1
    return len({a.record.device for a in attempts})


def device_rates(attempts: Sequence[AttemptResult]) -> dict[str, float]:
    """Each device's mean rate over its successful attempts.

    Args:
        attempts: one benchmark's attempts.

    Returns:
        device label -> mean rate, in label order (devices without a successful rate are left out).
    """
    by: dict[str, list[float]] = {}
    for a in attempts:
        if a.record.ok and a.rate is not None:
            by.setdefault(a.record.device, []).append(a.rate)
    return {d: statistics.fmean(by[d]) for d in sorted(by, key=_label_key)}


def spread(rates: dict[str, float]) -> float | None:
    """The slowest device's rate over the median device's: 1.0 when the devices are uniform.

    Args:
        rates: what ``device_rates`` returned.

    Returns:
        The ratio, or None below two devices.
    """
    if len(rates) < 2:
        return None
    median = statistics.median(rates.values())
    return min(rates.values()) / median if median > 0 else None


def _label_key(label: str) -> tuple[int, int | str]:
    return (0, int(label)) if label.isdigit() else (1, label)
