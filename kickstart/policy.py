"""A trained network from its checkpoint: the network its config describes, with its weights.

Below the methods (kickstarting loads checkpoint teachers with it), so it builds the network with
the factory it is given, by default :func:`kickstart.nets.build_agent` over the registered methods;
:func:`kickstart.evaluate.load_policy` passes every built-in one.
"""

from __future__ import annotations

from kickstart.config import Config, EnvConfig, from_dict
from kickstart.errors import CheckpointError


def load_policy(checkpoint: str, env_overrides: dict | None = None, build_agent=None):
    """Network, config and state of a training checkpoint (weights only; no code is loaded).

    ``env_overrides`` may change the env (e.g. ``sticky_actions``, or another game with the same
    observation shape and actions); a network that does not fit the env is a :class:`CheckpointError`.
    ``build_agent(cfg, spec)`` builds the network (default: :func:`kickstart.nets.build_agent`).
    """
    from kickstart.checkpoint import load_checkpoint
    from kickstart.envs import env_spec
    from kickstart.nets import build_agent as build_registered

    state = load_checkpoint(checkpoint)
    try:
        cfg = from_dict(Config, state["config"])
        if env_overrides:
            cfg.env = from_dict(EnvConfig, {**state["config"]["env"], **env_overrides}, "env")
        weights = state["learner"]["net"]
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint {checkpoint!r} lacks {e}; it is not a training checkpoint") from None
    spec = env_spec(cfg.env)
    saved = state.get("spec") if isinstance(state.get("spec"), dict) else {}
    for key, what in (("obs_shape", "observation shape"), ("action_nvec", "actions")):
        if key in saved and tuple(saved[key]) != tuple(getattr(spec, key)):
            raise CheckpointError(f"checkpoint {checkpoint!r} was trained with {what} {tuple(saved[key])} but "
                                  f"env {cfg.env.id!r} has {tuple(getattr(spec, key))}; evaluate it on an env "
                                  f"with the same {what} (drop or change --env)")
    net = (build_agent or build_registered)(cfg, spec)
    try:
        net.load_state_dict(weights)
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        detail = next((ln for ln in lines if not ln.startswith("Error(s) in loading")), type(e).__name__)
        raise CheckpointError(f"checkpoint {checkpoint!r} does not fit the network its config describes "
                              f"({detail[:200]})") from None
    return net, cfg, state
