"""A real one-node Slurm cluster for the tests: munged, slurmctld and slurmd from Debian's packages.

Everything lives in a private temporary folder (configuration, state, spool, logs, munge key and socket)
and on two free ports, so nothing of the machine's own Slurm or munge setup is touched and two test
sessions never meet. The daemons run in the foreground as children of the test process, so teardown
stops exactly the processes it started. ``make slurm-tools`` installs the packages.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import _free_port

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo", "srun")


def _which(name: str) -> str | None:
    return shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)),
                                      None)


@dataclass
class SlurmCluster:
    """A running one-node cluster.

    Attributes:
        folder: its private folder.
        conf: the slurm.conf (``SLURM_CONF``).
        node: the node's (this host's) name.
        partition: the one partition.
        env: an environment for Slurm's clients: this process's plus ``SLURM_CONF``.
    """

    folder: Path
    conf: Path
    node: str
    partition: str
    env: dict[str, str]


def _conf(folder: Path, node: str, ctld_port: int, slurmd_port: int) -> str:
    return f"""\
ClusterName=milaboxtest
SlurmctldHost={node}
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
AuthInfo=socket={folder}/munge/socket
CredType=cred/munge
SlurmUser=root
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/log/slurmctld.log
SlurmdLogFile={folder}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
ReturnToService=2
NodeName={node} CPUs={os.cpu_count() or 1} State=UNKNOWN
PartitionName=test Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in reversed(procs):  # slurmd, then slurmctld, then munged
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def _wait_idle(env: dict[str, str], procs: list[subprocess.Popen], folder: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    state = ""
    while time.monotonic() < deadline:
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            break
        proc = subprocess.run(["sinfo", "--noheader", "--Node", "--format=%T"], env=env, capture_output=True,
                              text=True, check=False)
        state = proc.stdout.strip()
        if state.startswith("idle"):
            return
        time.sleep(0.3)  # the daemons start in about a second; this wait happens once a session
    logs = "; ".join(f"{p.name}: {p.read_text()[-300:]}" for p in sorted((folder / "log").glob("*.log")))
    raise RuntimeError(f"the test Slurm cluster did not become idle (sinfo: {state!r}); logs: {logs}")


@pytest.fixture(scope="session")
def slurm_cluster():
    """Start munged, slurmctld and slurmd on this host; yield the cluster; stop them and remove their folder.

    Fails (never skips) when the packages are missing or the session is not root (slurmd must be).
    """
    missing = [b for b in BINARIES if _which(b) is None]
    if missing:
        pytest.fail(f"Slurm is not installed ({', '.join(missing)} missing): run `make slurm-tools` "
                    "(apt-get install slurmctld slurmd slurm-client munge)")
    if os.geteuid() != 0:
        pytest.fail("the Slurm tests start slurmd, which must run as root")
    # Not pytest's tmp_path: munged wants every folder above its socket searchable by all.
    folder = Path(tempfile.mkdtemp(prefix="milabox-slurm-", dir="/tmp"))
    folder.chmod(0o755)
    for sub in ("munge", "state", "spool", "log"):
        (folder / sub).mkdir(mode=0o755)
    key = folder / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))  # a private key: only this cluster's daemons and clients use it
    key.chmod(0o600)
    node = socket.gethostname()
    conf = folder / "slurm.conf"
    conf.write_text(_conf(folder, node, _free_port(), _free_port()))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    procs: list[subprocess.Popen] = []
    log = open(folder / "log" / "daemons.out", "ab")  # noqa: SIM115 (closed at teardown)
    try:
        procs.append(subprocess.Popen(
            [_which("munged"), "--foreground", f"--socket={folder}/munge/socket", f"--key-file={key}",
             f"--log-file={folder}/log/munged.log", f"--pid-file={folder}/munge/munged.pid",
             f"--seed-file={folder}/munge/seed"], stdout=log, stderr=log, env=env))
        deadline = time.monotonic() + 20
        while not (folder / "munge" / "socket").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        procs.append(subprocess.Popen([_which("slurmctld"), "-D", "-i"], stdout=log, stderr=log, env=env))
        procs.append(subprocess.Popen([_which("slurmd"), "-D"], stdout=log, stderr=log, env=env))
        _wait_idle(env, procs, folder)
        yield SlurmCluster(folder=folder, conf=conf, node=node, partition="test", env=env)
    finally:
        _stop(procs)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)
