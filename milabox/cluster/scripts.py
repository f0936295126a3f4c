"""One sbatch script per benchmark, rendered from the Jinja templates in ``templates/`` (one per runtime)."""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jinja2

from milabox import __version__
from milabox.cluster.options import SlurmOptions, check_options, check_safe, format_seconds
from milabox.definitions.benchmarks import Benchmark
from milabox.definitions.vendors import Vendor
from milabox.errors import ConfigError, RunError
from milabox.execution import multinode as mn
from milabox.execution.plan import Attempt
from milabox.execution.requests import container_request
from milabox.images.naming import benchmark_tag, runnable
from milabox.images.render import jinja_environment
from milabox.resources import package_path
from milabox.shipping.registry import parse_registry
from milabox_runtime.cli import RESULTS_MOUNT

TEMPLATES_DIR = package_path("cluster", "templates")
SLURM_DIR = ".slurm"  # hidden: run-folder readers skip it
STEP_NAME = "slurm-step.json"  # written by apptainer/pyxis scripts after each attempt
#: Added to the benchmarks' own time limits in a job's default ``--time``: image conversion, container start.
TIME_MARGIN_S = 15 * 60
#: The attempt's device, exported by apptainer/pyxis scripts for the step. Slurm sets the vendor's own variable
#: (``CUDA_VISIBLE_DEVICES``...) anew for every step to the step's GRES (Slurm doc/html/gres.shtml, "GPU Management":
#: "set for each job step"), so an export before ``srun`` is lost; the step sets the vendor's variable from this one.
DEVICE_VAR = "MILABOX_SLURM_DEVICE"


@dataclass(frozen=True)
class JobScript:
    """One benchmark's sbatch script.

    Attributes:
        benchmark: the benchmark it runs.
        name: file name in ``RUN_DIR/.slurm/``, e.g. ``matmul-fp32.sbatch``.
        text: the script.
        nodes: nodes it asks for.
        image: the image reference the job runs.
    """

    benchmark: Benchmark
    name: str
    text: str
    nodes: int
    image: str


def _templates() -> jinja2.Environment:
    env = jinja_environment(TEMPLATES_DIR)
    env.filters["sh"] = lambda value: shlex.quote(str(value))
    return env


def image_uri(group: str, vendor: Vendor, runtime: str, registry: str = "") -> str:
    """The image a job runs, as its runtime names it.

    Args:
        group: the benchmark group (one image per group and vendor).
        vendor: the vendor.
        runtime: ``docker``, ``apptainer`` or ``pyxis``.
        registry: ``HOST[:PORT][/PREFIX]`` the images were pushed to (``milabox push``); empty: each node's
            Docker engine.

    Returns:
        docker: the local tag (``milabox/matmul:cpu-0.1.0``) or ``HOST/PREFIX/matmul:cpu-0.1.0``;
        apptainer: ``docker-daemon://TAG`` or ``docker://HOST/PREFIX/...``; pyxis: ``dockerd://TAG`` (imported
        with ``enroot import`` first) or ``HOST#PREFIX/...`` (enroot's registry syntax).
    """
    tag = benchmark_tag(group, vendor)
    if not registry:
        return {"docker": tag, "apptainer": f"docker-daemon://{tag}", "pyxis": f"dockerd://{tag}"}[runtime]
    repository, version = parse_registry(registry).remote(tag)  # the name `milabox push` gave it
    remote = f"{repository}:{version}"
    if runtime == "apptainer":
        return f"docker://{remote}"
    if runtime == "pyxis":
        host, _, path = remote.partition("/")
        return f"{host}#{path}"
    return remote


def apptainer_flags(vendor: Vendor) -> list[str]:
    """GPU flags of ``apptainer exec``: the vendor data file's ``apptainer_flags`` (``--nv`` for NVIDIA...).

    Args:
        vendor: the vendor.

    Returns:
        The flags, in order.
    """
    return list(vendor.apptainer_flags)


def slurm_device_env(vendor: Vendor) -> str:
    """The variable that selects a vendor's GPUs, the one Slurm sets for each step's GRES.

    Args:
        vendor: the vendor.

    Returns:
        Its ``device_env``, or empty for a vendor whose devices are not GPUs that a variable selects
        (``none``; ``cpuset``: core sets, one attempt per job as with ``none``).
    """
    return vendor.device_env if vendor.device_selection in ("env", "device_requests") else ""


def select_device_shell(device_env: str, prefix: str = "") -> str:
    """Shell run by a job step before the container: this attempt's device, else the step's own allocation.

    Args:
        device_env: the vendor's variable (:func:`slurm_device_env`); empty: no selection.
        prefix: put before the exported name (``APPTAINERENV_``, which apptainer's ``--cleanenv`` lets through).

    Returns:
        Commands ending in ``; `` (empty without a variable). Nothing is exported when neither is set: an empty
        ``CUDA_VISIBLE_DEVICES`` would hide every GPU.
    """
    if not device_env:
        return ""
    return (f'd="${{{DEVICE_VAR}:-${{{device_env}:-}}}}"; '
            f'if [ -n "$d" ]; then export {prefix}{device_env}="$d"; fi; ')


def job_nodes(bench: Benchmark, options: SlurmOptions) -> int:
    """Nodes a benchmark's job asks for: ``--nodes`` when its plan spans nodes, else one.

    Args:
        bench: the benchmark.
        options: the submission options.

    Returns:
        The node count.
    """
    return options.nodes if bench.plan == mn.SPANNING_PLAN else 1


def _attempts_per_job(bench: Benchmark, vendor: Vendor, options: SlurmOptions) -> int:
    per_device = bench.plan != mn.SPANNING_PLAN and bool(slurm_device_env(vendor))
    return max(1, options.gpus_per_node) if per_device else 1


def render_script(bench: Benchmark, vendor: Vendor, options: SlurmOptions) -> JobScript:
    """Render one benchmark's sbatch script from ``images/slurm/<runtime>.sbatch.j2``.

    Args:
        bench: the benchmark.
        vendor: the vendor.
        options: the submission options (checked with :func:`check_options`).

    Returns:
        The script.

    Raises:
        ConfigError: the template refers to something not given, or a value cannot go into a script.
    """
    run_dir = options.run_dir.resolve()
    nodes = job_nodes(bench, options)
    image = image_uri(bench.group, vendor, options.runtime, options.registry)
    timeout = bench.timeout_s(options.size)
    limit = options.time_limit or format_seconds(timeout * _attempts_per_job(bench, vendor, options) + TIME_MARGIN_S)
    # The container's environment is the one a local run gives (run.container_request), minus the results path
    # that the image already sets.
    probe = container_request(Attempt(bench, 0, ()), vendor, image, run_dir, options.size, options.environment)
    # apptainer and pyxis give the container the user's home (apptainer refuses to have HOME set).
    dropped = {"MILABOX_RESULTS"} | ({"HOME"} if options.runtime != "docker" else set())
    environment = {k: v for k, v in probe.environment.items() if k not in dropped}
    check_safe(bench.group, "benchmark folder")
    check_safe(bench.entry, f"{bench.group}: entry")
    for key in environment:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ConfigError(f"--env: {key!r} is not a variable name")
    device_env = slurm_device_env(vendor)
    context = {
        "version": __version__, "bench": bench, "vendor": vendor, "runtime": options.runtime, "size": options.size,
        "run_dir": str(run_dir), "slurm_dir": f"{run_dir}/{SLURM_DIR}", "nodes": nodes,
        "partition": options.partition, "gpus_per_node": options.gpus_per_node, "time": limit,
        "exclusive": options.exclusive, "sbatch_options": list(options.sbatch_options),
        "multinode": nodes > 1, "nproc_per_node": max(1, options.gpus_per_node) if device_env else 1, "backend": mn.backend(vendor), "port_base": mn.SLURM_PORT_BASE, "port_span": mn.SLURM_PORT_SPAN,
        "milabox": shlex.join(options.milabox), "environment": environment,
        "env_args": [f"{k}={v}" for k, v in options.environment.items()], "image": image,
        "registry": options.registry, "results_mount": RESULTS_MOUNT,
        "workdir": f"/opt/milabox/benchmarks/{bench.group}", "entry": bench.entry, "timeout_s": math.ceil(timeout),
        "per_device": bench.plan != mn.SPANNING_PLAN and bool(device_env), "device_env": device_env,
        "device_var": DEVICE_VAR,
        "select_device": select_device_shell(device_env, "APPTAINERENV_" if options.runtime == "apptainer" else ""),
        "apptainer_flags": " ".join(apptainer_flags(vendor)), "step_name": STEP_NAME,
    }
    template = f"{options.runtime}.sbatch.j2"
    try:
        text = _templates().get_template(template).render(**context)
    except jinja2.UndefinedError as e:
        raise ConfigError(f"images/slurm/{template}: {e.message}") from None
    except jinja2.TemplateError as e:
        raise ConfigError(f"images/slurm/{template}: {e}") from None
    return JobScript(benchmark=bench, name=f"{bench.name}.sbatch", text=text, nodes=nodes, image=image)


def job_scripts(benchmarks: Sequence[Benchmark], vendor: Vendor, options: SlurmOptions,
                on_skip: Callable[[Benchmark, str], None] = lambda b, why: None) -> list[JobScript]:
    """Render every benchmark's script (benchmarks the vendor excludes are skipped and reported).

    Args:
        benchmarks: the selected benchmarks.
        vendor: the vendor.
        options: the submission options (checked here first).
        on_skip: told of each benchmark the vendor excludes, and why.

    Returns:
        One script per benchmark that runs on the vendor, in order.

    Raises:
        ConfigError: invalid options or template.
        RunError: none of the benchmarks runs on the vendor.
    """
    check_options(options)
    scripts = []
    for bench in runnable(benchmarks, vendor, on_skip):
        scripts.append(render_script(bench, vendor, options))
    if not scripts:
        raise RunError(f"nothing to submit: none of the selected benchmarks runs on vendor {vendor.name}")
    return scripts
