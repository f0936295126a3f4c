"""Running benchmarks: one container per attempt, every outcome recorded.

- ``local``: plan attempts, build their container requests, run them on this host's engine.
- ``interrupts``: Ctrl-C and SIGTERM as one orderly stop.
- ``multinode``: one container per node joined by torchrun's rendezvous.
- ``provenance``: the record of host, devices, images and commands beside each run.
- ``telemetry/``: power, energy, utilization and memory sampled on the host while a container runs.
- ``doctor``: checks of the engine, images, devices and telemetry backends.
"""
