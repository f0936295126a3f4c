"""PPO throughput (env steps/s) on a batched environment simulated on the device in plain torch.

The environment is a vectorised point-mass reacher: each of ``num_envs`` bodies in ``dim`` dimensions is pushed
by a continuous force (the action) towards its own goal, with damping, a reward of minus the distance (and a
small action cost), and a fixed episode length after which the env resets itself (episodes start staggered,
so resets are spread over steps). Everything (state, physics, resets) is tensors on the device: no host
round trip, as with Milabench's on-device environments (purejaxrl/brax).

One measured step is one PPO iteration, the unit of work of Milabench's purejaxrl PPO: a rollout of
``num_steps`` steps of all ``num_envs`` envs (policy forward, Gaussian sampling, env step), GAE, then
``update_epochs`` epochs of ``num_minibatches`` clipped-objective Adam updates on the rollout. Its item count
is num_envs x num_steps: an env step here is one transition of one environment, and the rate is environment
steps per second of the whole loop (acting and learning), like Milabench's ppo ``steps/s``.

Config (MILABOX_CONFIG): num_envs, num_steps (rollout length), update_epochs, num_minibatches, hidden (MLP
width), dim (point-mass dimensions; obs 3*dim, action dim), episode_len, plus optional lr (3e-4), gamma
(0.99), gae_lambda (0.95), clip_eps (0.2), vf_coef (0.5), ent_coef (0.0), max_grad_norm (0.5), seed (0),
and the runtime's warmup/steps/max_seconds. fp32 only.
"""

from __future__ import annotations

import math

import milabox_runtime as mr

DT = 0.05
DAMPING = 0.5
GOAL_RADIUS = 0.1


class PointMassEnv:
    """``n`` point masses in ``dim`` dimensions reaching random goals; all state lives on ``device``."""

    def __init__(self, torch, n: int, dim: int, episode_len: int, device, generator) -> None:
        self.torch, self.n, self.dim, self.episode_len, self.gen = torch, n, dim, episode_len, generator
        self.pos = torch.zeros(n, dim, device=device)
        self.vel = torch.zeros(n, dim, device=device)
        self.goal = torch.zeros(n, dim, device=device)
        # Staggered episode clocks, so that resets are spread over steps rather than all at once.
        self.t = torch.randint(0, episode_len, (n,), device=device, generator=generator)
        self._reset(torch.ones(n, dtype=torch.bool, device=device))

    @property
    def obs_dim(self) -> int:
        return 3 * self.dim

    def _uniform(self, *shape):
        return self.torch.rand(*shape, device=self.pos.device, generator=self.gen) * 2 - 1

    def _reset(self, mask) -> None:
        """Restart the masked envs: new position and goal in [-1, 1]^dim, at rest (branch-free)."""
        m = mask.unsqueeze(-1)
        self.pos = self.torch.where(m, self._uniform(self.n, self.dim), self.pos)
        self.goal = self.torch.where(m, self._uniform(self.n, self.dim), self.goal)
        self.vel = self.torch.where(m, self.torch.zeros_like(self.vel), self.vel)

    def observe(self):
        return self.torch.cat([self.pos, self.vel, self.goal - self.pos], dim=-1)

    def step(self, action):
        """Advance every env by one step; returns (next obs, reward, done), done envs already reset."""
        a = action.clamp(-1.0, 1.0)
        self.vel = self.vel * (1 - DAMPING * DT) + a * DT
        self.pos = (self.pos + self.vel * DT).clamp(-2.0, 2.0)
        dist = (self.goal - self.pos).norm(dim=-1)
        reward = -dist - 0.01 * (a * a).sum(-1) + (dist < GOAL_RADIUS).float()
        self.t = self.t + 1
        done = self.t >= self.episode_len
        self.t = self.torch.where(done, self.torch.zeros_like(self.t), self.t)
        self._reset(done)
        return self.observe(), reward, done.float()


def make_agent(torch, obs_dim: int, act_dim: int, hidden: int):
    """Separate actor and critic MLPs (tanh, two hidden layers) with orthogonal init, as purejaxrl's PPO."""
    nn = torch.nn

    def layer(i, o, gain):
        lin = nn.Linear(i, o)
        nn.init.orthogonal_(lin.weight, gain)
        nn.init.zeros_(lin.bias)
        return lin

    class Agent(nn.Module):
        def __init__(self):
            super().__init__()
            g = math.sqrt(2)
            self.actor = nn.Sequential(layer(obs_dim, hidden, g), nn.Tanh(), layer(hidden, hidden, g), nn.Tanh(),
                                       layer(hidden, act_dim, 0.01))
            self.critic = nn.Sequential(layer(obs_dim, hidden, g), nn.Tanh(), layer(hidden, hidden, g), nn.Tanh(),
                                        layer(hidden, 1, 1.0))
            self.log_std = nn.Parameter(torch.zeros(act_dim))

        def forward(self, obs):
            # No argument validation: it reads values back to the host, a device sync on every call.
            dist = torch.distributions.Normal(self.actor(obs), self.log_std.exp(), validate_args=False)
            return dist, self.critic(obs).squeeze(-1)

    return Agent()


def bench(run: mr.Run) -> None:
    """Run PPO iterations; each measured step is one rollout plus its update."""
    import torch

    cfg = run.config
    if run.precision != "fp32":
        raise ValueError(f"ppo runs fp32, not {run.precision}")
    n_envs, n_steps = int(cfg["num_envs"]), int(cfg["num_steps"])
    epochs, n_mb = int(cfg["update_epochs"]), int(cfg["num_minibatches"])
    dim, hidden, episode_len = int(cfg.get("dim", 3)), int(cfg["hidden"]), int(cfg.get("episode_len", 200))
    batch = n_envs * n_steps
    if min(n_envs, n_steps, epochs, n_mb, dim, hidden, episode_len) < 1 or batch % n_mb:
        raise ValueError(f"num_envs, num_steps, update_epochs, num_minibatches, dim, hidden and episode_len must "
                         f"be >= 1 and num_envs*num_steps ({batch}) a multiple of num_minibatches ({n_mb})")
    gamma, lam = float(cfg.get("gamma", 0.99)), float(cfg.get("gae_lambda", 0.95))
    clip_eps, vf_coef = float(cfg.get("clip_eps", 0.2)), float(cfg.get("vf_coef", 0.5))
    ent_coef, max_norm = float(cfg.get("ent_coef", 0.0)), float(cfg.get("max_grad_norm", 0.5))
    seed = int(cfg.get("seed", 0))
    run.seed(seed)
    dev = run.device
    gen = torch.Generator(device=dev)
    gen.manual_seed(seed)

    env = PointMassEnv(torch, n_envs, dim, episode_len, dev, gen)
    agent = make_agent(torch, env.obs_dim, dim, hidden).to(dev)
    optimizer = torch.optim.Adam(agent.parameters(), lr=float(cfg.get("lr", 3e-4)), eps=1e-5)
    obs = env.observe()
    # Rollout storage, allocated once.
    buf_obs = torch.zeros(n_steps, n_envs, env.obs_dim, device=dev)
    buf_act = torch.zeros(n_steps, n_envs, dim, device=dev)
    buf_logp, buf_val, buf_rew, buf_done = (torch.zeros(n_steps, n_envs, device=dev) for _ in range(4))
    mb_size = batch // n_mb
    reward_sum = torch.zeros((), device=dev)

    for _ in run.steps(items=batch):
        with torch.no_grad():
            for t in range(n_steps):
                dist, value = agent(obs)
                action = dist.sample()
                buf_obs[t], buf_act[t] = obs, action
                buf_logp[t], buf_val[t] = dist.log_prob(action).sum(-1), value
                obs, buf_rew[t], buf_done[t] = env.step(action)
            _, next_value = agent(obs)
            # GAE, backwards over the rollout; done[t] cuts the bootstrap from step t's successor.
            adv = torch.zeros_like(buf_rew)
            gae = torch.zeros(n_envs, device=dev)
            for t in reversed(range(n_steps)):
                nxt = next_value if t == n_steps - 1 else buf_val[t + 1]
                live = 1.0 - buf_done[t]
                delta = buf_rew[t] + gamma * nxt * live - buf_val[t]
                gae = delta + gamma * lam * live * gae
                adv[t] = gae
            returns = adv + buf_val
            reward_sum = buf_rew.mean()
        b_obs, b_act = buf_obs.reshape(batch, -1), buf_act.reshape(batch, -1)
        b_logp, b_val, b_adv, b_ret = (x.reshape(batch) for x in (buf_logp, buf_val, adv, returns))
        total = torch.zeros((), device=dev)
        for _ in range(epochs):
            perm = torch.randperm(batch, device=dev, generator=gen)
            for k in range(n_mb):
                idx = perm[k * mb_size:(k + 1) * mb_size]
                dist, value = agent(b_obs[idx])
                logp = dist.log_prob(b_act[idx]).sum(-1)
                ratio = (logp - b_logp[idx]).exp()
                a = b_adv[idx]
                a = (a - a.mean()) / (a.std() + 1e-8)
                actor_loss = -torch.min(ratio * a, ratio.clamp(1 - clip_eps, 1 + clip_eps) * a).mean()
                v_clipped = b_val[idx] + (value - b_val[idx]).clamp(-clip_eps, clip_eps)
                value_loss = 0.5 * torch.max((value - b_ret[idx]) ** 2, (v_clipped - b_ret[idx]) ** 2).mean()
                entropy = dist.entropy().sum(-1).mean()
                loss = actor_loss + vf_coef * value_loss - ent_coef * entropy
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(agent.parameters(), max_norm)
                optimizer.step()
                total = total + loss.detach()
        run.loss(total / (epochs * n_mb))  # one read-back an iteration: the minibatches stay asynchronous
    run.emit("ppo", mean_reward=float(reward_sum), obs_dim=env.obs_dim, act_dim=dim,
             parameters=sum(p.numel() for p in agent.parameters()))


if __name__ == "__main__":
    mr.main(bench, defaults={"unit": "env steps/s"})
