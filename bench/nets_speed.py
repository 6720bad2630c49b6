"""Speed of the agent networks: inference (actor) and training (learner) rates, in agent steps/s.

    python bench/nets_speed.py [--seconds 1.0] [--threads 1] [--device cpu]

Inference: one no_grad forward with T=1 over a batch of 16 and of 64 environments (what an actor
does per step), state passed along. Training: forward + backward of ``sum(logits) + sum(baseline)``
over a [T=20, B=32] unroll ([20, 8] for impala_deep), no optimiser step. Each figure is the best
of 5 timed windows of ``--seconds / 5`` (the best, because other processes sharing the cores only
ever slow a window down). Prints figures, not verdicts.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kickstart.config import NetConfig  # noqa: E402
from kickstart.nets import build_net  # noqa: E402
from kickstart.specs import EnvSpec  # noqa: E402

CASES = [  # (label, obs_shape, obs_scale, torso, core, training [T, B])
    ("minatar ff      (4,10,10)", (4, 10, 10), 1.0, "minatar", "ff", (20, 32)),
    ("minatar lstm    (4,10,10)", (4, 10, 10), 1.0, "minatar", "lstm", (20, 32)),
    ("nature ff       (4,84,84)", (4, 84, 84), 1 / 255, "nature", "ff", (20, 32)),
    ("impala_shallow ff (4,84,84)", (4, 84, 84), 1 / 255, "impala_shallow", "ff", (20, 32)),
    ("impala_shallow lstm (4,84,84)", (4, 84, 84), 1 / 255, "impala_shallow", "lstm", (20, 32)),
    ("impala_deep ff  (4,84,84)", (4, 84, 84), 1 / 255, "impala_deep", "ff", (20, 8)),
]


def spec_for(obs_shape, obs_scale, num_actions=6) -> EnvSpec:
    return EnvSpec(obs_shape=obs_shape, obs_dtype="uint8", obs_scale=obs_scale, action_nvec=(num_actions,),
                   multi_discrete=False, action_meanings=tuple(f"a{i}" for i in range(num_actions)),
                   frames_per_step=1, task_names=("bench",))


def inputs(spec: EnvSpec, T: int, B: int, device, p_first: float = 0.0):
    obs = torch.randint(0, 256, (T, B, *spec.obs_shape), dtype=torch.uint8, device=device)
    last_action = torch.randint(0, spec.num_actions, (T, B), device=device)
    last_reward = torch.randn(T, B, device=device)
    first = torch.rand(T, B, device=device) < p_first
    return obs, last_action, last_reward, first


def best_rate(fn, steps_per_call: int, seconds: float, device) -> float:
    """Best agent steps/s over 5 windows of seconds/5 (after 2 warm-up calls)."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()
    for _ in range(2):
        fn()
    sync()
    best = 0.0
    for _ in range(5):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            sync()
            dt = time.perf_counter() - t0
            if dt >= seconds / 5:
                break
        best = max(best, n * steps_per_call / dt)
    return best


def bench_case(obs_shape, obs_scale, torso, core, train_tb, seconds, device, p_first):
    torch.manual_seed(0)
    spec = spec_for(obs_shape, obs_scale)
    net = build_net(NetConfig(torso=torso, core=core), spec).to(device)
    n_params = sum(p.numel() for p in net.parameters())
    rates = {}
    for B in (16, 64):
        x = inputs(spec, 1, B, device)
        state = [net.initial_state(B, device)]

        def act():
            with torch.no_grad():
                _, state[0] = net(*x, state[0])
        rates[f"infer B={B}"] = best_rate(act, B, seconds, device)
    T, B = train_tb
    x = inputs(spec, T, B, device, p_first)
    state0 = net.initial_state(B, device)

    def train():
        net.zero_grad(set_to_none=True)
        out, _ = net(*x, state0)
        (out.policy_logits.sum() + out.baseline.sum()).backward()
    rates[f"train T={T} B={B}"] = best_rate(train, T * B, seconds, device)
    return n_params, rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.5, help="timed seconds per figure")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (keep 1, as actors and learner do)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--p-first", type=float, default=0.0,
                    help="probability that a training step starts an episode (cuts the fused LSTM)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, 6 actions, "
          f"p_first={args.p_first}; agent steps/s")
    header = f"{'net':32s} {'params':>9s} {'infer B=16':>11s} {'infer B=64':>11s} {'train':>9s}  (train T x B)"
    print(header)
    for label, shape, scale, torso, core, tb in CASES:
        n_params, rates = bench_case(shape, scale, torso, core, tb, args.seconds, device, args.p_first)
        r = list(rates.values())
        print(f"{label:32s} {n_params:9,d} {r[0]:11,.0f} {r[1]:11,.0f} {r[2]:9,.0f}  ({tb[0]} x {tb[1]})", flush=True)


if __name__ == "__main__":
    main()
