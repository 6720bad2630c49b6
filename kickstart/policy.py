"""A trained network from its checkpoint: the network its config describes, with its weights.

Below the methods (kickstarting loads checkpoint teachers with it), so it reads the checkpoint's
config with the config class it is given and builds the network with the factory it is given, by
default a class made from the registered methods (:func:`kickstart.config.make_config`) and
:func:`kickstart.nets.build_agent` over that config's methods; :func:`kickstart.evaluate.load_policy`
passes the registry's (every built-in method).
"""

from __future__ import annotations

import dataclasses

from kickstart.config import EnvConfig, make_config
from kickstart.configio import from_dict
from kickstart.errors import CheckpointError
from kickstart.method import registered


def read_config(data, config_cls: type | None = None):
    """The config a checkpoint's config dict describes, read with ``config_cls``. None: a class of
    the core sections and the registered methods' sections, leaving out the section of a method this
    process has not imported (checkpoints carry every section their run had): such a method could
    not build its network here anyway, and a network that then does not fit the weights is reported
    as such."""
    if config_cls is not None:
        return from_dict(config_cls, data)
    cls = make_config(registered())
    if isinstance(data, dict):
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
    return from_dict(cls, data)


def load_policy(checkpoint: str, env_overrides: dict | None = None, build_agent=None, config_cls: type | None = None):
    """Network, config and state of a training checkpoint (weights only; no code is loaded).

    ``env_overrides`` may change the env (e.g. ``sticky_actions``, or another game with the same
    observation shape and actions); a network that does not fit the env is a :class:`CheckpointError`.
    ``build_agent(cfg, spec)`` builds the network (default: :func:`kickstart.nets.build_agent`);
    ``config_cls`` reads the checkpoint's config (default: the core sections and those of the
    registered methods, :func:`read_config`).
    """
    from kickstart.checkpoint import load_checkpoint
    from kickstart.envs import env_spec
    from kickstart.nets import build_agent as build_registered

    state = load_checkpoint(checkpoint)
    try:
        cfg = read_config(state["config"], config_cls)
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
