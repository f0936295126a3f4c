"""PPO in JAX on a brax environment (Milabench's ppo: purejaxrl's PPO on brax's hopper); measures env steps/s.

purejaxrl's continuous PPO, written here in JAX, flax and optax: brax's ``hopper`` (``positional`` backend) in
brax's episode (1000 steps) and auto-reset wrappers, vmapped over ``num_envs`` envs, actions clipped to [-1, 1],
observations and rewards normalised by running statistics (purejaxrl's NormalizeVecObservation and
NormalizeVecReward). The actor-critic is purejaxrl's: two ``hidden``-wide tanh layers each for the Gaussian policy
(a learned log-std) and the value, orthogonal init. One measured step is one jitted PPO update: a rollout of
``num_steps`` steps of every env (``jax.lax.scan``), GAE, then ``update_epochs`` epochs of ``num_minibatches``
clipped-objective Adam updates on the shuffled rollout. Its items are num_envs x num_steps env steps. The step's
new state and loss go to ``run.ready`` (the clock waits for them); its mean total loss is the run's loss.

Config keys (MILABOX_CONFIG): env_name, backend, num_envs, num_steps, update_epochs, num_minibatches, hidden,
lr, gamma, gae_lambda, clip_eps, ent_coef, vf_coef, max_grad_norm, seed, plus warmup, steps, min_seconds and
max_seconds. fp32 only.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # as Milabench's main.py: allocate as needed

import milabox_runtime as mr

# purejaxrl's defaults in Milabench benchmarks/purejaxrl/ppo.py (Arguments; mila-iqia/milabench@faf3923).
DEFAULTS = {"unit": "env steps/s", "env_name": "hopper", "backend": "positional", "hidden": 256, "lr": 3e-4,
            "gamma": 0.99, "gae_lambda": 0.95, "clip_eps": 0.2, "ent_coef": 0.0, "vf_coef": 0.5,
            "max_grad_norm": 0.5, "seed": 30}
EPISODE_LENGTH = 1000  # purejaxrl's BraxGymnaxWrapper


def make_network(action_dim: int, hidden: int):
    """purejaxrl's ActorCritic: (mean, log_std, value) of an observation."""
    import flax.linen as nn
    import jax.numpy as jnp
    import numpy as np
    from flax.linen.initializers import constant, orthogonal

    class ActorCritic(nn.Module):
        @nn.compact
        def __call__(self, x):
            def dense(width, scale):
                return nn.Dense(width, kernel_init=orthogonal(scale), bias_init=constant(0.0))

            a = nn.tanh(dense(hidden, np.sqrt(2))(x))
            a = nn.tanh(dense(hidden, np.sqrt(2))(a))
            mean = dense(action_dim, 0.01)(a)
            log_std = self.param("log_std", nn.initializers.zeros, (action_dim,))
            c = nn.tanh(dense(hidden, np.sqrt(2))(x))
            c = nn.tanh(dense(hidden, np.sqrt(2))(c))
            return mean, log_std, jnp.squeeze(dense(1, 1.0)(c), axis=-1)

    return ActorCritic()


def make_update(cfg, env, network, tx):
    """The jitted PPO update: state -> (state, mean total loss)."""
    import jax
    import jax.numpy as jnp

    n_envs, n_steps, n_mb = cfg["num_envs"], cfg["num_steps"], cfg["num_minibatches"]
    gamma, lam, clip = cfg["gamma"], cfg["gae_lambda"], cfg["clip_eps"]

    def log_prob(x, mean, log_std):
        return jnp.sum(-0.5 * ((x - mean) / jnp.exp(log_std)) ** 2 - log_std - 0.5 * jnp.log(2 * jnp.pi), axis=-1)

    def env_step(carry, _):
        params, env_state, obs_stats, rew_stats, ret, obs, key = carry
        key, k = jax.random.split(key)
        mean, log_std, value = network.apply(params, obs)
        action = mean + jnp.exp(log_std) * jax.random.normal(k, mean.shape)
        env_state = jax.vmap(env.step)(env_state, jnp.clip(action, -1.0, 1.0))
        done = env_state.done
        obs_stats = update_stats(obs_stats, env_state.obs)
        ret = ret * gamma * (1 - done) + env_state.reward
        rew_stats = update_stats(rew_stats, ret)
        reward = env_state.reward / jnp.sqrt(rew_stats[1] + 1e-8)
        step = (done, action, value, reward, log_prob(action, mean, log_std), obs)
        return (params, env_state, obs_stats, rew_stats, ret, normalize(env_state.obs, obs_stats), key), step

    def loss_fn(params, batch):
        action, old_value, old_logp, obs, gae, target = batch
        mean, log_std, value = network.apply(params, obs)
        clipped = old_value + jnp.clip(value - old_value, -clip, clip)
        v_loss = 0.5 * jnp.maximum(jnp.square(value - target), jnp.square(clipped - target)).mean()
        ratio = jnp.exp(log_prob(action, mean, log_std) - old_logp)
        gae = (gae - gae.mean()) / (gae.std() + 1e-8)
        actor = -jnp.minimum(ratio * gae, jnp.clip(ratio, 1.0 - clip, 1.0 + clip) * gae).mean()
        entropy = jnp.sum(0.5 + 0.5 * jnp.log(2 * jnp.pi) + log_std)
        return actor + cfg["vf_coef"] * v_loss - cfg["ent_coef"] * entropy

    def minibatch(carry, batch):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (jax.tree_util.tree_map(lambda p, u: p + u, params, updates), opt_state), loss

    def epoch(carry, _):
        params, opt_state, data, key = carry
        key, k = jax.random.split(key)
        order = jax.random.permutation(k, n_envs * n_steps)
        batches = jax.tree_util.tree_map(lambda x: x[order].reshape((n_mb, -1) + x.shape[1:]), data)
        (params, opt_state), losses = jax.lax.scan(minibatch, (params, opt_state), batches)
        return (params, opt_state, data, key), losses

    def update(state):
        params, opt_state, env_state, obs_stats, rew_stats, ret, obs, key = state
        carry = (params, env_state, obs_stats, rew_stats, ret, obs, key)
        carry, (done, action, value, reward, logp, seen) = jax.lax.scan(env_step, carry, None, n_steps)
        _, env_state, obs_stats, rew_stats, ret, obs, key = carry
        _, _, last_value = network.apply(params, obs)

        def gae_step(carry, step):
            gae, next_value = carry
            d, v, r = step
            delta = r + gamma * next_value * (1 - d) - v
            gae = delta + gamma * lam * (1 - d) * gae
            return (gae, v), gae

        _, adv = jax.lax.scan(gae_step, (jnp.zeros_like(last_value), last_value), (done, value, reward),
                              reverse=True, unroll=16)
        flat = jax.tree_util.tree_map(lambda x: x.reshape((n_envs * n_steps,) + x.shape[2:]),
                                      (action, value, logp, seen, adv, adv + value))
        key, k = jax.random.split(key)
        (params, opt_state, _, _), losses = jax.lax.scan(epoch, (params, opt_state, flat, k), None,
                                                         cfg["update_epochs"])
        return (params, opt_state, env_state, obs_stats, rew_stats, ret, obs, key), losses.mean()

    return jax.jit(update)


def update_stats(stats, x):
    """Running mean, variance and count merged with a batch (purejaxrl's NormalizeVec* wrappers)."""
    mean, var, count = stats
    b_mean, b_var, b_count = x.mean(axis=0), x.var(axis=0), x.shape[0]
    delta, total = b_mean - mean, count + b_count
    m2 = var * count + b_var * b_count + delta**2 * count * b_count / total
    return mean + delta * b_count / total, m2 / total, total


def normalize(x, stats):
    return (x - stats[0]) / (stats[1] + 1e-8) ** 0.5


def bench(run: mr.Run) -> None:
    import jax
    import jax.numpy as jnp
    import optax
    from brax import envs
    from brax.envs.wrappers.training import AutoResetWrapper, EpisodeWrapper

    cfg = run.config
    n_envs, n_steps = cfg["num_envs"], cfg["num_steps"]
    if (n_envs * n_steps) % cfg["num_minibatches"]:
        raise ValueError("num_envs x num_steps must be a multiple of num_minibatches (purejaxrl asserts it)")
    env = AutoResetWrapper(EpisodeWrapper(envs.get_environment(cfg["env_name"], backend=cfg["backend"]),
                                          episode_length=EPISODE_LENGTH, action_repeat=1))
    network = make_network(env.action_size, cfg["hidden"])
    key, k_init, k_reset = jax.random.split(jax.random.PRNGKey(cfg["seed"]), 3)
    params = network.init(k_init, jnp.zeros((env.observation_size,)))
    tx = optax.chain(optax.clip_by_global_norm(cfg["max_grad_norm"]), optax.adam(cfg["lr"], eps=1e-5))
    env_state = jax.vmap(env.reset)(jax.random.split(k_reset, n_envs))
    ones = jnp.ones((env.observation_size,))
    count = jnp.asarray(1e-4, jnp.float32)  # purejaxrl's initial count; an array, so the scan carry keeps its type
    obs_stats = update_stats((jnp.zeros_like(ones), ones, count), env_state.obs)
    rew_stats = (jnp.zeros(()), jnp.ones(()), count)
    state = (params, tx.init(params), env_state, obs_stats, rew_stats, jnp.zeros((n_envs,)),
             normalize(env_state.obs, obs_stats), key)
    update = make_update(cfg, env, network, tx)
    for _ in run.steps(items=n_envs * n_steps):
        state, loss = update(state)
        run.ready((state, loss))
        run.loss(loss)


if __name__ == "__main__":
    mr.main(bench, defaults=DEFAULTS, framework="jax")
