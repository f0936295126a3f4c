"""Brax PPO training on Ant in JAX, as Milabench's brax benchmark runs it; measures env steps/s.

brax.training's PPO trainer (``brax.training.agents.ppo.train``) on ``brax.envs.get_environment(env)``, with
observation normalisation, one process over every local device (brax pmaps itself). Evaluation between epochs is
off. A measured step is one brax training epoch: ``updates_per_epoch`` training steps, each a rollout of
``unroll_length`` x ``batch_size`` x ``num_minibatches`` env steps over ``num_envs`` envs, then the SGD passes. Its
items are the env steps it made (brax's own counter), so the rate is Milabench's ``training/sps``. brax calls back
once an epoch's metrics are computed; that callback ends the step (the metrics go to ``run.ready``) and reports
``training/total_loss`` as the loss. The first (warm-up) step holds the environment's set-up and XLA's compilation.

Config keys (MILABOX_CONFIG): env, num_envs, batch_size, num_minibatches, unroll_length, episode_length,
updates_per_epoch, learning_rate, entropy_cost, discounting, reward_scaling, seed, max_epochs (a bound on brax's
schedule: the run stops on its own clock first), plus warmup, steps, min_seconds and max_seconds.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # as Milabench's benchfile: allocate as needed

import milabox_runtime as mr

# Milabench benchmarks/brax/main.py defaults (mila-iqia/milabench@faf3923).
DEFAULTS = {"unit": "env steps/s", "env": "ant", "learning_rate": 3e-4, "entropy_cost": 0.01, "discounting": 0.97,
            "reward_scaling": 0.1, "unroll_length": 5, "episode_length": 20, "updates_per_epoch": 2, "seed": 0,
            "max_epochs": 100_000}


class _Finished(Exception):
    """Raised from brax's callback once the run's loop has ended, to leave brax's training loop."""


def env_steps_per_epoch(cfg: dict) -> int:
    """Env steps one brax training epoch makes (brax: batch_size x unroll_length x num_minibatches a training step)."""
    return int(cfg["updates_per_epoch"]) * int(cfg["batch_size"]) * int(cfg["unroll_length"]) * \
        int(cfg["num_minibatches"])


def bench(run: mr.Run) -> None:
    from brax import envs
    from brax.training.agents.ppo.train import train

    cfg = run.config
    if (cfg["batch_size"] * cfg["num_minibatches"]) % cfg["num_envs"]:
        raise ValueError("batch_size x num_minibatches must be a multiple of num_envs (brax's PPO requires it)")
    epochs = int(cfg["max_epochs"])
    steps = run.steps()  # items: each step's env steps, from brax's counter (run.items)
    done = {"env_steps": 0}

    def on_epoch(env_steps: int, metrics: dict) -> None:
        run.items(env_steps - done["env_steps"])
        done["env_steps"] = env_steps
        run.ready(metrics)
        run.loss(metrics["training/total_loss"])
        try:
            next(steps)
        except StopIteration:
            raise _Finished from None

    next(steps)  # the first step begins here: the environment, its reset and the compilation are warm-up
    try:
        train(environment=envs.get_environment(env_name=cfg["env"]), num_timesteps=epochs * env_steps_per_epoch(cfg),
              num_evals=epochs + 1, run_evals=False, episode_length=cfg["episode_length"], action_repeat=1,
              num_envs=cfg["num_envs"], batch_size=cfg["batch_size"], num_minibatches=cfg["num_minibatches"],
              unroll_length=cfg["unroll_length"], learning_rate=cfg["learning_rate"],
              entropy_cost=cfg["entropy_cost"], discounting=cfg["discounting"],
              reward_scaling=cfg["reward_scaling"], normalize_observations=True, seed=cfg["seed"],
              progress_fn=on_epoch)
    except _Finished:
        return
    raise RuntimeError(f"brax finished its {epochs} epochs before the run's loop ended; raise max_epochs")


if __name__ == "__main__":
    mr.main(bench, defaults=DEFAULTS, framework="jax")
