"""Running benchmarks through Slurm: one sbatch script per benchmark, every job's results in one run folder.

``submit`` renders a script per benchmark from the Jinja templates in ``templates/`` (one per runtime:
``docker``, ``apptainer``, ``pyxis``), submits them with ``sbatch --parsable``, follows their states
(``squeue``, then ``scontrol``/``sacct`` once they leave the queue, sleeping a few seconds between checks) and
gathers what they left. The run folder must be on a filesystem every node sees:

```
RUN_DIR/
  manifest.json            written by the submitting process at start and end (``slurm`` holds the jobs)
  <benchmark>/r0-d<dev>/   one attempt folder as in a local run (events.jsonl, container.log, record.json)
  .slurm/                  the scripts, each job's output, converted images; ignored by readers
  .nodes/node<K>/          multi-node docker jobs: the attempts of node ranks > 0 (they report no rate)
```

With the docker runtime the job runs ``milabox slurm run-job`` on each node, which writes its attempts' records
itself (:func:`milabox.cluster.job.run_job`). Apptainer and pyxis jobs need no milabox on the nodes: their script
writes ``slurm-step.json`` (exit code, start, end) beside each attempt's events and log, and the submitting process
writes the records when the job is over (:func:`milabox.cluster.jobs.gather`).

Modules:

- ``options``: :class:`SlurmOptions` (how to submit) and their checks.
- ``scripts``: rendering each benchmark's sbatch script (:class:`JobScript`) and the image it runs.
- ``client``: Slurm's command-line clients (:class:`Slurm`) and the job states they report (:class:`JobState`).
- ``jobs``: submitting the scripts, following the jobs, gathering their records, finishing the manifest.
- ``job``: what a docker-runtime job runs on each node (``milabox slurm run-job``).
"""
