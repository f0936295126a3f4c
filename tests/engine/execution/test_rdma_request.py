"""The engine honours the RDMA part of a multi-node request: added capabilities and an unlimited memlock.

The container is created and inspected, never started; no device is passed (this host has no /dev/infiniband).
"""

from __future__ import annotations

import pytest
from helpers import CPU

from milabox.engine import CONTAINER_LABEL, ContainerRequest

pytestmark = pytest.mark.engine


def test_created_container_carries_ipc_lock_and_unlimited_memlock(engine):
    image = CPU.local_base.tag  # the local base image (`milabox base --vendor cpu`), no build needed
    assert engine.image(image) is not None, f"{image} is missing; run `milabox base --vendor cpu`"
    request = ContainerRequest(image=image, command=("true",), labels={CONTAINER_LABEL: "rdma-request"},
                               cap_add=("IPC_LOCK",), ulimits=(("memlock", -1, -1),))
    with engine.container(request) as container:
        host = container.inspect()["HostConfig"]
    assert host["CapAdd"] == ["IPC_LOCK"]
    assert host["Ulimits"] == [{"Name": "memlock", "Soft": -1, "Hard": -1}]
