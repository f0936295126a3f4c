"""Benchmarks: one folder each in benchmarks/, a ``benchmark.toml`` definition beside its workload code.

A folder is a *group*; its ``[variants.NAME]`` tables (precision, plan, sizes...) are the benchmarks a
user runs and sees as rows. All variants of a group share one image. A folder without variants is a
single benchmark named after the folder.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from milabox.definitions.toml import Fields, read_toml
from milabox.errors import ConfigError, UnknownBenchmark
from milabox.resources import package_path
from milabox_runtime.precision import PRECISIONS as RUNTIME_PRECISIONS

PLANS = ("per_device", "all_devices")
#: What a group's workload is written in: its image is built FROM that framework's runtime image of the vendor
#: (``milabox/runtime:<vendor>-<version>`` for torch, ``milabox/runtime-jax:<vendor>-<version>`` for jax), installed
#: from that framework's lock. The first is the default.
FRAMEWORKS = ("torch", "jax")
SIZES = ("smoke", "full")
# One list for host and container: what the in-container runtime can run is what a definition may name.
PRECISIONS = tuple(RUNTIME_PRECISIONS)
DEFAULT_TIMEOUT_S = {"smoke": 300, "full": 3600}
_GROUP_FIELDS = ("description", "tags", "family", "plan", "unit", "weight", "precision", "min_devices", "min_nodes",
                 "framework", "entry", "requirements", "excluded_vendors", "sizes", "variants")
_VARIANT_FIELDS = ("description", "tags", "family", "plan", "unit", "weight", "precision", "min_devices", "min_nodes",
                   "excluded_vendors", "sizes")


@dataclass(frozen=True)
class Benchmark:
    """One benchmark row (a variant of a group).

    Attributes:
        name: what a user types and reads, e.g. ``bert-fp32``.
        group: the folder name; one image per group and vendor.
        description: one line.
        tags: free labels used for selection (family included).
        family: workload family (``matmul``, ``nlp``, ``vision``...).
        plan: ``per_device`` (one container per selected device) or ``all_devices`` (one spanning all).
        unit: unit of the rate, e.g. ``items/s`` or ``TFLOPS``.
        weight: weight in the suite score (0: reported, not scored).
        precision: ``fp32``, ``tf32``, ``fp16``, ``bf16``, or ``tf32-fp16`` (the runtime's list).
        min_devices: fewest devices the benchmark needs (default 1); a run with fewer skips it, saying why.
        min_nodes: fewest nodes it spans (default 1; Milabench's ``*-nodes`` rows: 2); a run on fewer nodes
            (no ``--nodes``, or a Slurm job with fewer) skips it, saying why.
        framework: ``torch`` (default) or ``jax`` (see ``FRAMEWORKS``): which runtime image and lock the group's
            image is built from. A group field only (all variants share one image); a vendor that does not offer
            the framework (its ``[jax]`` table says why) skips the row, saying why.
        entry: script run in the container, relative to the folder.
        requirements: pip requirement lines installed into the group's image.
        group_description: the folder's own description (the image's).
        excluded_vendors: vendor name -> why the benchmark does not run there.
        sizes: size name -> parameters handed to the workload (``warmup``, ``steps``, ``max_seconds``...).
        folder: the benchmark's folder.
    """

    name: str
    group: str
    description: str
    tags: tuple[str, ...]
    family: str
    plan: str
    unit: str
    weight: float
    precision: str
    min_devices: int
    min_nodes: int
    entry: str
    requirements: tuple[str, ...]
    framework: str = FRAMEWORKS[0]
    group_description: str = ""
    excluded_vendors: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, dict[str, Any]] = field(default_factory=dict)
    folder: Path = Path()

    def config(self, size: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """The parameters handed to the workload (as ``MILABOX_CONFIG``) for one size.

        Args:
            size: ``smoke`` or ``full``.
            overrides: parameters replacing the size's (``--set``, checked by :func:`parse_overrides`).

        Returns:
            The size's parameters (with the overrides) plus benchmark, group, size, precision and unit.
        """
        return {**copy.deepcopy(self.sizes[size]), **copy.deepcopy(overrides or {}), "benchmark": self.name,
                "group": self.group, "size": size, "precision": self.precision, "unit": self.unit}

    def timeout_s(self, size: str, overrides: dict[str, Any] | None = None) -> float:
        """Wall-clock limit of one container: the size's ``timeout_s`` (or its override) or a default per size."""
        return float({**self.sizes[size], **(overrides or {})}.get("timeout_s", DEFAULT_TIMEOUT_S[size]))

    def supports(self, vendor: str) -> bool:
        """Whether this benchmark runs on the vendor (see ``excluded_vendors`` for why not)."""
        return vendor not in self.excluded_vendors


#: Folders of a user's own benchmark folders, added to the bundled suite (``os.pathsep``-separated).
BENCHMARKS_ENV = "MILABOX_BENCHMARKS"
#: Replaces the bundled suite's folder (a test's private copy, a site's patched suite).
SUITE_ENV = "MILABOX_SUITE"
_extra_dirs: list[Path] = []


def add_benchmark_dirs(folders: Sequence[Path]) -> None:
    """Add folders of benchmark folders for this process (``--benchmarks-dir``), after ``$MILABOX_BENCHMARKS``.

    Raises:
        ConfigError: a folder does not exist.
    """
    for folder in folders:
        if not Path(folder).is_dir():
            raise ConfigError(f"--benchmarks-dir {folder}: no such folder (expected a folder of "
                              "<name>/benchmark.toml + main.py folders)")
        _extra_dirs.append(Path(folder))


def benchmark_dirs() -> list[Path]:
    """Where benchmark folders are read from, in order: the bundled suite (``$MILABOX_SUITE`` replaces it), then
    each folder of ``$MILABOX_BENCHMARKS`` (a path list), then each ``--benchmarks-dir``; a folder named twice (the
    variable and the option, or ``--resume`` repeating a run's own ``--benchmarks-dir``) is read once."""
    extra = [Path(p) for p in os.environ.get(BENCHMARKS_ENV, "").split(os.pathsep) if p.strip()]
    folders: dict[Path, Path] = {}
    for folder in (Path(os.environ.get(SUITE_ENV) or package_path("suite")), *extra, *_extra_dirs):
        folders.setdefault(folder.resolve(), folder)
    return list(folders.values())


def _merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _sizes(f: Fields) -> dict[str, dict[str, Any]]:
    sizes = f.get("sizes", dict)
    for size in SIZES:
        if not isinstance(sizes.get(size), dict):
            raise f.fail(f"sizes.{size}", f"is missing; every benchmark defines the sizes {', '.join(SIZES)}")
    for size, params in sizes.items():
        if size not in SIZES:
            raise f.fail(f"sizes.{size}", f"is not a known size; valid: {', '.join(SIZES)}")
        for key in ("warmup", "steps"):
            value = params.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise f.fail(f"sizes.{size}.{key}", f"is {value!r}; expected a non-negative integer")
        if params.get("steps") == 0:
            raise f.fail(f"sizes.{size}.steps", "is 0; a benchmark must measure at least one step")
        for key in ("min_seconds", "max_seconds"):
            value = params.get(key)
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0):
                raise f.fail(f"sizes.{size}.{key}", f"is {value!r}; expected a number of seconds >= 0")
        if params.get("min_seconds", 0) > params.get("max_seconds", float("inf")):
            raise f.fail(f"sizes.{size}.min_seconds", f"is {params['min_seconds']!r}, above max_seconds "
                         f"({params['max_seconds']!r}); max_seconds is the hard cap")
        timeout = params.get("timeout_s")
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
            raise f.fail(f"sizes.{size}.timeout_s", f"is {timeout!r}; expected a positive number of seconds")
    return sizes


def _scalar(text: str) -> Any:
    """A ``--set`` value as TOML reads it (``8``, ``0.5``, ``true``, ``"x"``), else as JSON, else the bare text."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    try:
        return json.loads(text)
    except ValueError:
        return text


def _same_type(old: Any, new: Any) -> Any:
    if isinstance(old, bool) or isinstance(new, bool):
        return new if isinstance(old, bool) and isinstance(new, bool) else None
    if isinstance(old, float) and isinstance(new, int):
        return float(new)
    return new if type(old) is type(new) and not isinstance(old, (dict, list)) else None


def parse_overrides(pairs: Sequence[str], benchmarks: Sequence[Benchmark], size: str) -> dict[str, dict[str, Any]]:
    """``--set KEY=VALUE`` (every selected row whose size has KEY) and ``--set ROW.KEY=VALUE`` (that row only).

    The value is read as TOML (then JSON, then plain text) and must have the type of the size's own value (an
    integer is accepted for a float).

    Args:
        pairs: the options' values, in order (a later one wins).
        benchmarks: the selected rows.
        size: the run's size (its parameters are the valid keys).

    Returns:
        Row -> parameter -> value, for the rows it changes.

    Raises:
        ConfigError: no ``=``, a row that is not selected, a key the size does not have, or a value of another
            type (the message names the key, the row and the valid keys).
    """
    rows = {b.name: b for b in benchmarks}
    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        target, sep, text = pair.partition("=")
        target = target.strip()
        if not sep or not target:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE or ROW.KEY=VALUE")
        row, dot, key = target.rpartition(".")
        if dot and row not in rows:
            raise ConfigError(f"--set {pair}: {row!r} is not a selected benchmark; selected: {', '.join(rows)}")
        chosen = [rows[row]] if dot else [b for b in benchmarks if key in b.sizes[size]]
        if not chosen:
            valid = sorted({k for b in benchmarks for k in b.sizes[size]})
            raise ConfigError(f"--set {pair}: no selected benchmark has a {size} parameter {key!r}; "
                              f"valid: {', '.join(valid)}")
        value = _scalar(text.strip())
        for bench in chosen:
            params = bench.sizes[size]
            if key not in params:
                raise ConfigError(f"--set {pair}: {bench.name} has no {size} parameter {key!r}; "
                                  f"valid: {', '.join(sorted(params))}")
            typed = _same_type(params[key], value)
            if typed is None:
                raise ConfigError(f"--set {pair}: {bench.name}'s {key} is {type(params[key]).__name__} "
                                  f"({params[key]!r}), not {type(value).__name__} ({value!r})")
            out.setdefault(bench.name, {})[key] = typed
    return out


def _excluded(f: Fields) -> dict[str, str]:
    table = f.get("excluded_vendors", dict, {})
    for vendor, why in table.items():
        if not isinstance(why, str) or not why.strip():
            raise f.fail(f"excluded_vendors.{vendor}", "must be a string saying why the vendor is excluded")
    return dict(table)


def load_group(folder: Path) -> list[Benchmark]:
    """Read and validate one benchmark folder.

    Args:
        folder: ``benchmarks/<group>/`` holding ``benchmark.toml`` and the workload code.

    Returns:
        Its benchmarks (one per variant, or one named after the folder).

    Raises:
        ConfigError: the definition is missing, or a field is missing or invalid (the message names it).
    """
    path = folder / "benchmark.toml"
    group = Fields(path, read_toml(path))
    base = {key: group.table[key] for key in _GROUP_FIELDS if key in group.table and key != "variants"}
    variants = group.get("variants", dict, {}) or {folder.name: {}}
    entry = group.get("entry", str, "main.py")
    if not (folder / entry).is_file():
        raise group.fail("entry", f"is {entry!r} but {folder / entry} does not exist")
    requirements = tuple(group.strings("requirements"))
    framework = group.get("framework", str, FRAMEWORKS[0], choices=FRAMEWORKS)
    group.get("family", str)
    group.reject_unknown(_GROUP_FIELDS)
    out = []
    for name, overrides in variants.items():
        prefix = f"variants.{name}." if "variants" in group.table else ""
        if not isinstance(overrides, dict):
            raise group.fail(f"variants.{name}", "must be a table")
        bad = sorted(set(overrides) - set(_VARIANT_FIELDS))
        if bad:
            raise group.fail(f"{prefix}{bad[0]}", f"cannot be set per variant; valid: {', '.join(_VARIANT_FIELDS)}")
        table = _merge(base, overrides)
        f = Fields(path, table, prefix, set(overrides))
        out.append(Benchmark(
            name=name,
            group=folder.name,
            description=f.get("description", str),
            tags=tuple(dict.fromkeys([table.get("family", ""), *f.strings("tags")])),
            family=f.get("family", str),
            plan=f.get("plan", str, "per_device", choices=PLANS),
            unit=f.get("unit", str),
            weight=f.get("weight", float, 1.0),
            precision=f.get("precision", str, "fp32", choices=PRECISIONS),
            min_devices=f.get("min_devices", int, 1),
            min_nodes=f.get("min_nodes", int, 1),
            entry=entry,
            requirements=requirements,
            framework=framework,
            group_description=group.get("description", str),
            excluded_vendors=_excluded(f),
            sizes=_sizes(f),
            folder=folder,
        ))
        if out[-1].weight < 0:
            raise f.fail("weight", f"is {out[-1].weight}; expected a number >= 0")
        for need in ("min_devices", "min_nodes"):
            if getattr(out[-1], need) < 1:
                raise f.fail(need, f"is {getattr(out[-1], need)}; expected a whole number >= 1")
    return out


def all_benchmarks(folder: Path | None = None) -> dict[str, Benchmark]:
    """Load every benchmark folder.

    Args:
        folder: one folder of benchmark folders (default: every folder of :func:`benchmark_dirs`).

    Returns:
        Benchmarks by name, in folder then definition order.

    Raises:
        ConfigError: a definition is invalid, a folder is missing, or two benchmarks (or groups) share a name.
    """
    folders = [Path(folder)] if folder else benchmark_dirs()
    found: dict[str, Benchmark] = {}
    groups: dict[str, Path] = {}
    for top in folders:
        if not top.is_dir():
            raise ConfigError(f"{top}: benchmark folder not found (from ${BENCHMARKS_ENV}, ${SUITE_ENV} or "
                              "--benchmarks-dir)")
        for sub in sorted(p for p in top.iterdir() if (p / "benchmark.toml").is_file()):
            if sub.name in groups:  # one image per group: two folders of one name would build the same tag
                raise ConfigError(f"{sub}: a benchmark folder named {sub.name!r} is already in {groups[sub.name]}")
            groups[sub.name] = top
            for bench in load_group(sub):
                if bench.name in found:
                    raise ConfigError(f"{sub / 'benchmark.toml'}: benchmark name {bench.name!r} is already "
                                      f"defined in {found[bench.name].folder / 'benchmark.toml'}")
                found[bench.name] = bench
    if not found:
        raise ConfigError(f"{', '.join(map(str, folders))}: no benchmark folders (with a benchmark.toml) found")
    return found


def group_members(group: str, folder: Path | None = None) -> list[Benchmark]:
    """Every benchmark of one group (folder), whichever were selected: they all share the group's image."""
    return [b for b in all_benchmarks(folder).values() if b.group == group]


SUITES = {
    "standard": "the weighted set: every benchmark with a weight above 0 (what the suite score is made of)",
    "all": "every benchmark, weight 0 ones included",
}


def _matching(name: str, benchmarks: dict[str, Benchmark]) -> list[Benchmark]:
    matches = [b for b in benchmarks.values() if name in (b.name, b.group, b.family) or name in b.tags]
    if not matches:
        known = sorted({*benchmarks, *(b.group for b in benchmarks.values())})
        close = difflib.get_close_matches(name, [*known, *sorted({t for b in benchmarks.values() for t in b.tags})],
                                          n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(known)}"
        raise UnknownBenchmark(f"unknown benchmark {name!r}{hint}")
    return matches


def select(names: list[str] | tuple[str, ...], benchmarks: dict[str, Benchmark], suite: str | None = None,
           exclude: list[str] | tuple[str, ...] = ()) -> list[Benchmark]:
    """Resolve what a user asked for: names, a suite, minus exclusions.

    Args:
        names: benchmark names, group (folder) names, families or tags; empty means the suite (or all).
        benchmarks: all benchmarks.
        suite: ``standard`` (weight > 0) or ``all``; combined with names, the union.
        exclude: names, groups, families or tags to leave out.

    Returns:
        The selected benchmarks, each once, in definition order.

    Raises:
        UnknownBenchmark: a name, exclusion or suite matches nothing (the message suggests the closest names).
    """
    chosen: dict[str, Benchmark] = {}
    if suite is not None:
        if suite not in SUITES:
            raise UnknownBenchmark(f"unknown suite {suite!r}; valid: {', '.join(SUITES)}")
        chosen.update((b.name, b) for b in benchmarks.values() if suite == "all" or b.weight > 0)
    for name in names:
        chosen.update((b.name, b) for b in _matching(name, benchmarks))
    if not names and suite is None:
        chosen = dict(benchmarks)
    for name in exclude:
        for bench in _matching(name, benchmarks):
            chosen.pop(bench.name, None)
    return [b for b in benchmarks.values() if b.name in chosen]
