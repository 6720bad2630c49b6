"""A diagnostic instrument: does a checkpoint's critic see the state?

An actor-critic whose critic is blind to the state (it predicts the mean return everywhere) hands
the policy advantages that are pure noise, and the policy stays where it is: Atari Pong's policy sat
at uniform for 9.4M frames while ``value/mean`` looked healthy. The learner's
``value/explained_variance`` measures the critic against its own bootstrapped targets; this probe
measures it against what the states are worth: it plays ``--steps`` agent steps in
``--envs`` envs of the checkpoint's env with the checkpoint's policy (or uniformly random actions),
computes each state's discounted Monte-Carlo return, and reports on held-out states

* the checkpoint critic's correlation with those returns and its explained variance;
* with ``--fit N``, what a freshly initialised copy of the same network reaches after ``N``
  supervised Adam steps (256 states each) on the rest: how much of the return is learnable from the
  observation by this network at all, with ``net.init`` as configured or as ``--init``.

    python bench/critic_probe.py runs/pong/checkpoint.pt --steps 1500 --fit 1500

States whose return is cut short by the end of the probe (the last ``--tail`` steps) are left out.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch


def collect(net, cfg, envs: int, steps: int, policy: str, seed: int):
    """``(obs [steps, envs, ...], rewards [steps, envs], ends [steps, envs])`` of one probe."""
    from kickstart.distributions import make_dist
    from kickstart.envs import make_batched_env
    from kickstart.runtime.actor import assign_tasks

    spec = net.spec
    dist = make_dist(spec.action_nvec, spec.multi_discrete)
    env = make_batched_env(cfg.env, assign_tasks(0, envs, spec.num_tasks), seed, spec)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    obs = env.reset()
    O = np.empty((steps, envs, *spec.obs_shape), obs.dtype)
    R = np.empty((steps, envs), np.float32)
    D = np.empty((steps, envs), bool)
    state = net.initial_state(envs)
    last_action = torch.zeros(1, envs, *((len(spec.action_nvec),) if spec.multi_discrete else ()), dtype=torch.long)
    last_reward = torch.zeros(1, envs)
    first = torch.ones(1, envs, dtype=torch.bool)
    for t in range(steps):
        O[t] = obs
        with torch.no_grad():
            out, state = net(torch.from_numpy(obs)[None], last_action, last_reward, first, state)
        if policy == "random":
            action = np.stack([rng.integers(0, n, envs) for n in spec.action_nvec], -1)
            action = action if spec.multi_discrete else action[:, 0]
        else:
            action = dist.sample(out.policy_logits[0], gen).numpy()
        res = env.step_full(action)
        R[t], D[t], obs = res.reward, res.terminated | res.truncated, res.obs
        last_action = torch.as_tensor(action)[None]
        last_reward = torch.from_numpy(res.reward)[None]
        first = torch.from_numpy(D[t])[None]
    env.close()
    return O, R, D


def returns(R: np.ndarray, D: np.ndarray, discount: float) -> np.ndarray:
    """Discounted return of every state, to the end of its episode or of the probe."""
    G = np.zeros_like(R)
    g = np.zeros(R.shape[1], np.float32)
    for t in reversed(range(len(R))):
        g = R[t] + discount * g * ~D[t]
        G[t] = g
    return G


def values(net, X: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """The feed-forward critic's value of each observation (a recurrent core starts from zeros)."""
    out = []
    with torch.no_grad():
        for x in X.split(chunk):
            n = len(x)
            o, _ = net(x[None], torch.zeros(1, n, dtype=torch.long), torch.zeros(1, n),
                       torch.ones(1, n, dtype=torch.bool), net.initial_state(n))
            out.append(o.baseline[0])
    return torch.cat(out)


def report(name: str, v: torch.Tensor, y: torch.Tensor, baseline_mse: float) -> None:
    mse = ((v - y) ** 2).mean().item()
    corr = float(np.corrcoef(v.numpy(), y.numpy())[0, 1]) if v.std() > 0 else float("nan")
    print(f"{name}: value mean {v.mean():.3f} std {v.std():.4f} | correlation with the return {corr:.3f} | "
          f"explained variance {1 - mse / baseline_mse:.3f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--envs", type=int, default=16)
    ap.add_argument("--steps", type=int, default=1500, help="agent steps per env")
    ap.add_argument("--tail", type=int, default=400, help="last steps left out (their returns are cut short)")
    ap.add_argument("--policy", choices=("checkpoint", "random"), default="checkpoint")
    ap.add_argument("--fit", type=int, default=0, help="supervised steps of a fresh network (0: none)")
    ap.add_argument("--init", choices=("default", "orthogonal"), default=None, help="the fresh network's net.init")
    ap.add_argument("--lr", type=float, default=2.5e-4)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.steps <= args.tail:
        ap.error(f"--steps ({args.steps}) must exceed --tail ({args.tail})")

    from kickstart.nets import build_agent
    from kickstart.policy import load_policy
    from kickstart.runtime.proc import setup_process

    from kickstart.errors import UserError

    setup_process(1)
    try:
        net, cfg, _ = load_policy(args.checkpoint)
    except UserError as e:
        ap.exit(2, f"critic_probe: {e}\n")
    net.eval()
    t0 = time.time()
    O, R, D = collect(net, cfg, args.envs, args.steps, args.policy, args.seed)
    G = returns(R, D, cfg.learner.discount)
    keep = slice(0, args.steps - args.tail)
    X = torch.from_numpy(O[keep].reshape(-1, *O.shape[2:]))
    Y = torch.from_numpy(G[keep].reshape(-1))
    perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(args.seed))
    n_test = max(1, len(X) // 6)
    test, train = perm[:n_test], perm[n_test:]
    base = ((Y[test] - Y[train].mean()) ** 2).mean().item()
    print(f"{len(X)} states of {cfg.env.id} ({args.policy} policy, {time.time() - t0:.0f} s); return mean "
          f"{Y.mean():.3f} std {Y.std():.3f}; {n_test} held out", flush=True)
    report("checkpoint critic", values(net, X[test]), Y[test], base)
    if args.fit:
        fcfg = dataclasses.replace(cfg, net=dataclasses.replace(cfg.net, init=args.init or cfg.net.init))
        torch.manual_seed(args.seed)
        fresh = build_agent(fcfg, net.spec)
        opt = torch.optim.Adam(fresh.parameters(), lr=args.lr)
        gen = torch.Generator().manual_seed(args.seed)
        for step in range(1, args.fit + 1):
            idx = train[torch.randint(len(train), (256,), generator=gen)]
            n = len(idx)
            out, _ = fresh(X[idx][None], torch.zeros(1, n, dtype=torch.long), torch.zeros(1, n),
                           torch.ones(1, n, dtype=torch.bool), fresh.initial_state(n))
            loss = ((out.baseline[0] - Y[idx]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % max(1, args.fit // 6) == 0 or step == args.fit:
                report(f"fresh net.init={fcfg.net.init}, {step} supervised steps", values(fresh, X[test]), Y[test], base)


if __name__ == "__main__":
    main()
