"""Evaluate a trained policy: mean return over N episodes per task."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from kickstart import methods
from kickstart.config import EnvConfig
from kickstart.distributions import make_dist
from kickstart.policy import load_policy as load_network
from kickstart.runtime.unroll import net_inputs


@dataclass
class TaskEval:
    task: str
    returns: list[float]
    score: float | None       # capped normalised score of the mean return, when the task has one

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))


def episode_quotas(episodes: int, envs_per_task: int) -> list[int]:
    """How many episodes each of a task's envs plays: ``episodes`` split as evenly as possible."""
    q, r = divmod(episodes, envs_per_task)
    return [q + (1 if i < r else 0) for i in range(envs_per_task)]


def evaluate(net: torch.nn.Module, env_cfg: EnvConfig, episodes: int, seed: int = 12345,
             greedy: bool = False, max_steps: int | None = None, envs_per_task: int = 8) -> list[TaskEval]:
    """Run ``episodes`` episodes per task, each to its end, on up to ``envs_per_task`` envs per task.

    Each env plays a fixed number of episodes one after another (its quota), decided before any
    episode is played: short episodes are not over-represented, as they would be by taking the first
    ``episodes`` to finish. Inference is batched over all envs. ``max_steps`` bounds the agent steps
    as a safety net (None: unbounded).
    """
    from kickstart.envs import make_batched_env, resolve_tasks, suites

    tasks = resolve_tasks(env_cfg.id)
    k = max(1, min(envs_per_task, episodes))
    quota = episode_quotas(episodes, k) * len(tasks)              # env i runs task i // k
    env = make_batched_env(env_cfg, [t for t in range(len(tasks)) for _ in range(k)], seed)
    spec = env.spec
    dist = make_dist(spec.action_nvec, spec.multi_discrete)
    gen = torch.Generator().manual_seed(seed)
    n = env.num_envs
    per_env: list[list[float]] = [[] for _ in range(n)]
    obs = torch.from_numpy(env.reset())
    first = torch.ones(n, dtype=torch.bool)
    reward = torch.zeros(n)
    last_action = torch.zeros((n,) + spec.action_shape, dtype=torch.int64)
    state = net.initial_state(n)
    task = torch.as_tensor(np.asarray(env.task_ids), dtype=torch.int64)[None]
    steps = 0
    net.eval()
    try:
        while any(len(per_env[i]) < quota[i] for i in range(n)):
            with torch.no_grad():
                o, la, r, f = net_inputs(obs[None], last_action[None], reward[None], first[None])
                out, state = net(o, la, r, f, state, task)
            logits = out.policy_logits[0]
            action = dist.greedy(logits) if greedy else dist.sample(logits, gen)
            o_np, rew, done, eps = env.step(action.numpy())
            for ep in eps:
                if len(per_env[ep.env_index]) < quota[ep.env_index]:
                    per_env[ep.env_index].append(float(ep.ret))
            obs = torch.from_numpy(o_np)
            first = torch.from_numpy(np.asarray(done, dtype=bool))
            reward = torch.from_numpy(np.asarray(rew, dtype=np.float32))
            last_action = action.clone()
            last_action[first] = 0
            steps += 1
            if max_steps is not None and steps >= max_steps:
                break
    finally:
        env.close()
    out = []
    for t, name in enumerate(tasks):
        rets = [r for i in range(t * k, (t + 1) * k) for r in per_env[i]]
        score = None
        if rets and suites.has_normalisation(name):
            score = suites.capped_score(name, float(np.mean(rets)))
        out.append(TaskEval(name, rets, score))
    return out


def load_policy(checkpoint: str, env_overrides: dict | None = None):
    """Network, config and state of a training checkpoint or exported policy (weights only; no code
    is loaded), with every built-in method known (:func:`kickstart.policy.load_policy`)."""
    return load_network(checkpoint, env_overrides, methods.build_agent, methods.Config)


def summary_table(results: list[TaskEval]) -> list[tuple[str, str, str, str]]:
    rows = []
    for r in results:
        rows.append((r.task, f"{r.mean:.2f}", f"{r.std:.2f}", "-" if r.score is None else f"{r.score:.1f}"))
    scores = [r.score for r in results if r.score is not None]
    if len(results) > 1 and len(scores) == len(results):
        rows.append(("suite score", "", "", f"{sum(scores) / len(scores):.1f}"))
    return rows


def export_policy(checkpoint: str, out: str):
    """Save the policy of ``checkpoint`` alone: config, env spec, network weights and counters.

    The result is a valid kickstart checkpoint (``kickstart eval`` runs it; kickstarting loads it as
    a teacher) without optimiser state, so it is about a third of the size.
    """
    from pathlib import Path

    from kickstart.checkpoint import save_checkpoint

    net, cfg, state = load_policy(checkpoint)   # checks that the weights fit their config
    # a method may export another policy than the network it trains (Mix & Match: its target agent)
    config, weights = methods.export(net, cfg) or (state["config"],
                                                   {k: v.clone() for k, v in net.state_dict().items()})
    exported = {"config": config, "learner": {"net": weights},
                "counters": state.get("counters", {}), "spec": state.get("spec"), "exported_from": str(checkpoint)}
    return save_checkpoint(Path(out), exported)
