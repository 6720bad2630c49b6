"""Frozen teachers of any architecture, and their adaptation to the student's env.

A teacher comes from one of three sources (``TeacherConfig.kind``):

* ``checkpoint``: a kickstart checkpoint file or run directory. The network is rebuilt from the
  checkpoint's own config (any torso, feed-forward or LSTM core) and sees observations and actions
  as its own env spec says (``env_spec(teacher_cfg.env)``), e.g. a single-game MinAtar expert
  (``minatar:Breakout``, obs ``(4, 10, 10)``) teaching a ``minatar5`` student (obs ``(10, 10, 10)``).
* ``torchscript``: a TorchScript file (``torch.jit.save``) holding a feed-forward module
  ``forward(obs: Tensor[B, *obs] float32) -> Tensor[B, A]`` logits, with optional attributes
  ``action_meanings: List[str]`` and ``obs_shape: List[int]``. Loading it runs the TorchScript
  program the file holds (TorchScript, not arbitrary Python): only use files you trust.
* ``callable``: ``"package.module:function"``, imported in each actor process, or a name given to
  :func:`register_teacher` (``"package.module:name"`` imports the registering module first, which
  is what makes it work in actor processes; a bare ``"name"`` only sees registrations already made
  in the process). Same signature as the TorchScript forward.

TorchScript and callable teachers receive the observations as stored in the unroll, converted to
float32 and *not* scaled (Atari pixels are 0..255, MinAtar channels 0/1), and are feed-forward.

The actor runs a teacher once per unroll over ``[T, n]`` (:meth:`Teacher.unroll`): a network as
the learner runs it (one call; an LSTM resets at ``first`` inside it), a TorchScript or callable
teacher over the ``T * n`` observations as one batch (``B = T * n`` in its signature).

Teachers are frozen: parameters have ``requires_grad=False``, modules are in ``eval()`` mode, they
run under ``torch.no_grad()`` and belong to no optimizer (they live in the actors, or beside the
learner's network in the trainer's :class:`~kickstart.runtime.placement.Placement`; see
:func:`.plan.placement`).

They are adapted to the student's env (observations, actions) by :mod:`.adapt`; which tasks a
teacher covers and where it runs is :mod:`.plan`.
"""

from __future__ import annotations

import importlib
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor

from kickstart.errors import CheckpointError, UserError
from kickstart.kickstarting.config import TeacherConfig
from kickstart.kickstarting.names import check_name
from kickstart.precision import resolve as resolve_precision
from kickstart.specs import EnvSpec

__all__ = ["FunctionTeacher", "NetTeacher", "RegisteredTeacher", "Teacher", "load_teacher", "register_teacher",
           "teacher_kind"]

State = tuple[Tensor, ...]


# -- registry of callable teachers ---------------------------------------------------------------

@dataclass(frozen=True)
class RegisteredTeacher:
    fn: Callable[[Tensor], Tensor]
    action_meanings: tuple[str, ...] | None = None
    obs_shape: tuple[int, ...] | None = None


_REGISTRY: dict[str, RegisteredTeacher] = {}


def register_teacher(name: str, fn: Callable[[Tensor], Tensor], action_meanings: Sequence[str] | None = None,
                     obs_shape: Sequence[int] | None = None) -> None:
    """Make ``fn`` (float observations ``[B, *obs]`` -> logits ``[B, A]``) usable as a teacher.

    Call it at import time of a module, and name the teacher ``callable: "that.module:name"`` so
    that each actor process imports the module (and so registers ``fn``) before looking it up.
    ``action_meanings`` names the A actions (None: the student's own, same number); ``obs_shape``
    is the shape ``fn`` expects (None: the student's).
    """
    if not isinstance(name, str) or not name:
        raise ValueError("register_teacher: name must be a non-empty string")
    if not callable(fn):
        raise ValueError(f"register_teacher({name!r}): fn must be callable, got {type(fn).__name__}")
    _REGISTRY[name] = RegisteredTeacher(fn, None if action_meanings is None else tuple(str(m) for m in action_meanings),
                                        None if obs_shape is None else tuple(int(d) for d in obs_shape))


# -- teachers in their own processing ------------------------------------------------------------

class Teacher:
    """A frozen policy, in its own observation shape and action space."""

    name: str
    obs_shape: tuple[int, ...] | None
    """The observation shape it expects; None: whatever the student's is."""
    action_meanings: tuple[str, ...] | None
    """Names of its actions; None: the student's actions (same number)."""
    num_logits: int | None
    """Width of its logits; None until known (callables: found by :func:`bind`'s probe)."""
    multi_discrete: bool = False
    action_nvec: tuple[int, ...] | None = None
    recurrent: bool = False

    def initial_state(self, batch_size: int) -> State:
        return ()

    @property
    def movable(self) -> bool:
        """Whether :meth:`to` can move it to another device (a torch module can; a Python callable,
        which may hold its own weights anywhere, cannot)."""
        return False

    def to(self, device: torch.device) -> "Teacher":
        """Move its weights to ``device`` (a no-op for teachers that are not :attr:`movable`)."""
        return self

    def __call__(self, obs: Tensor, first: Tensor, last_action: Tensor, last_reward: Tensor,
                 state: State) -> tuple[Tensor, State]:
        """One step for ``n`` envs: ``obs [n, *obs_shape]``, ``first``/``last_reward`` ``[n]``,
        ``last_action`` in the teacher's action space. Returns logits ``[n, num_logits]`` and the
        new state (the state is reset where ``first`` is set)."""
        raise NotImplementedError

    def unroll(self, obs: Tensor, first: Tensor, last_action: Tensor, last_reward: Tensor,
               state: State) -> tuple[Tensor, State]:
        """``T`` steps of ``n`` envs in one call: the inputs of :meth:`__call__` with a leading time
        axis (``obs [T, n, *obs_shape]``, ...). Returns logits ``[T, n, num_logits]`` and the state
        after step ``T-1``. This default, for feed-forward teachers, runs the ``T * n`` rows as one
        batch; recurrent teachers override it."""
        if self.recurrent:
            raise NotImplementedError(f"{type(self).__name__} is recurrent and must implement unroll")
        T, n = first.shape[:2]
        logits, state = self(obs.flatten(0, 1), first.flatten(0, 1), last_action.flatten(0, 1),
                             last_reward.flatten(0, 1), state)
        return logits.reshape(T, n, -1), state


def _freeze(module: torch.nn.Module) -> None:
    for p in module.parameters():
        p.requires_grad_(False)
    module.eval()


class NetTeacher(Teacher):
    """A kickstart :class:`~kickstart.nets.AgentNet` (feed-forward or LSTM), frozen."""

    def __init__(self, name: str, net: torch.nn.Module):
        self.name = name
        self.net = net
        _freeze(net)
        spec: EnvSpec = net.spec
        self.spec = spec
        self.obs_shape = tuple(spec.obs_shape)
        self.multi_discrete = spec.multi_discrete
        self.action_nvec = tuple(spec.action_nvec)
        self.action_meanings = None if spec.multi_discrete or not spec.action_meanings else tuple(spec.action_meanings)
        self.num_logits = sum(spec.action_nvec) if spec.multi_discrete else spec.num_actions
        self.recurrent = len(net.initial_state(1)) > 0

    def initial_state(self, batch_size: int) -> State:
        return tuple(self.net.initial_state(batch_size))

    @property
    def movable(self) -> bool:
        return True

    def with_precision(self, precision: str) -> "NetTeacher":
        """Run in ``precision`` (``auto``, ``fp32`` or ``bf16``, resolved per device by
        :mod:`kickstart.precision`; outputs and state stay float32). A feed-forward teacher that
        runs in bf16 on the CPU also stores its weights in bf16 (no per-call weight casts); a
        recurrent one keeps float32 weights and state and runs its matmuls under autocast."""
        self.net.precision = precision
        if resolve_precision(precision, "cpu") == "bf16" and not self.recurrent:
            self.net.to(torch.bfloat16)
        return self

    def to(self, device: torch.device) -> "NetTeacher":
        self.net.to(device)
        return self

    def __call__(self, obs, first, last_action, last_reward, state):
        logits, state = self.unroll(obs[None], first[None], last_action[None], last_reward[None], state)
        return logits[0], state

    def unroll(self, obs, first, last_action, last_reward, state):
        """The network over ``[T, n]`` as the learner runs it (the LSTM core resets at ``first``)."""
        with torch.no_grad():
            out, state = self.net(obs, last_action, last_reward, first, state)
        return out.policy_logits, state


class FunctionTeacher(Teacher):
    """A feed-forward function (a TorchScript module or a Python callable): float obs -> logits."""

    def __init__(self, name: str, fn: Callable[[Tensor], Tensor], action_meanings: Sequence[str] | None = None,
                 obs_shape: Sequence[int] | None = None):
        self.name = name
        self.fn = fn
        if isinstance(fn, torch.nn.Module):
            _freeze(fn)
        self.action_meanings = None if action_meanings is None else tuple(str(m) for m in action_meanings)
        self.obs_shape = None if obs_shape is None else tuple(int(d) for d in obs_shape)
        self.num_logits = None if self.action_meanings is None else len(self.action_meanings)

    @property
    def movable(self) -> bool:
        return isinstance(self.fn, torch.nn.Module)   # TorchScript modules are

    def to(self, device: torch.device) -> "FunctionTeacher":
        if self.movable:
            self.fn.to(device)
        return self

    def __call__(self, obs, first, last_action, last_reward, state):
        with torch.no_grad():
            logits = self.fn(obs.float())
        n = obs.shape[0]
        if not isinstance(logits, Tensor) or logits.dim() != 2 or logits.shape[0] != n or (
                self.num_logits is not None and logits.shape[1] != self.num_logits):
            got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
            want = f"({n}, {self.num_logits if self.num_logits is not None else 'A'})"
            raise UserError(f"teacher {self.name!r} returned {got} for {n} observations of shape "
                            f"{tuple(obs.shape[1:])}; it must return logits of shape {want}")
        return logits, state


# -- loading -------------------------------------------------------------------------------------

def _is_torchscript(p: Path) -> bool:
    try:
        if not p.is_file() or not zipfile.is_zipfile(p):
            return False
        with zipfile.ZipFile(p) as z:
            return any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def teacher_kind(name: str, cfg: TeacherConfig) -> str:
    """``checkpoint``, ``torchscript`` or ``callable``, resolving ``kind: auto`` (see TeacherConfig)."""
    kind = cfg.kind
    if kind == "auto":
        if cfg.callable:
            return "callable"
        return "torchscript" if _is_torchscript(Path(cfg.path)) else "checkpoint"
    if kind == "callable" and not cfg.callable:
        raise UserError(f"teacher {name!r} has kind=callable but no callable; set "
                        f"kickstart.teachers.{name}.callable=package.module:function")
    if kind in ("checkpoint", "torchscript") and not cfg.path:
        raise UserError(f"teacher {name!r} has kind={kind} but no path; set kickstart.teachers.{name}.path")
    return kind


def _named(name: str, e: UserError) -> UserError:
    """The same one-line error, naming the teacher."""
    return type(e)(f"teacher {name!r}: {e}")


def _load_checkpoint_teacher(name: str, path: str) -> Teacher:
    from kickstart.policy import load_policy

    try:
        net, _, _ = load_policy(path)
    except UserError as e:  # CheckpointError (missing, corrupt, unfit) or an env the teacher's config names
        raise _named(name, e) from None
    return NetTeacher(name, net)


def _load_torchscript_teacher(name: str, path: str) -> Teacher:
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"teacher {name!r}: TorchScript file {str(p)!r} does not exist")
    try:
        with warnings.catch_warnings():  # torch >= 2.9 deprecates TorchScript; it still loads
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(p), map_location="cpu")
    except Exception as e:  # noqa: BLE001 - any failure means the file is unusable
        first = (str(e).strip().splitlines() or [type(e).__name__])[0].split(". ")[0][:160]
        raise CheckpointError(f"teacher {name!r}: {str(p)!r} is corrupt or not a TorchScript file ({first})") from None
    meanings = getattr(module, "action_meanings", None)
    obs_shape = getattr(module, "obs_shape", None)
    return FunctionTeacher(name, module, meanings, obs_shape)


def _resolve_callable(name: str, target: str) -> RegisteredTeacher:
    if ":" not in target:
        if target in _REGISTRY:
            return _REGISTRY[target]
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise UserError(f"teacher {name!r}: no teacher is registered as {target!r} (registered: {known}); write "
                        f"callable as 'package.module:function' or 'package.module:name' with the module that "
                        f"registers it, so that actor processes can import it")
    mod_name, attr = target.split(":", 1)
    try:
        module = importlib.import_module(mod_name)
    except Exception as e:  # noqa: BLE001 - ImportError or an error inside the module
        raise UserError(f"teacher {name!r}: cannot import module {mod_name!r} of callable {target!r} "
                        f"({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''})") from None
    obj = getattr(module, attr, None)
    registered = _REGISTRY.get(attr)
    if registered is not None and (obj is None or obj is registered.fn):
        return registered
    if obj is None:
        raise UserError(f"teacher {name!r}: module {mod_name!r} has no function {attr!r} and registers no "
                        f"teacher of that name")
    if not callable(obj):
        raise UserError(f"teacher {name!r}: {target!r} is a {type(obj).__name__}, not a callable")
    return RegisteredTeacher(obj)


def load_teacher(name: str, cfg: TeacherConfig) -> Teacher:
    """Load the frozen teacher ``cfg`` describes; one-line :class:`UserError` on any problem."""
    check_name(name)
    kind = teacher_kind(name, cfg)
    if cfg.precision == "bf16" and kind != "checkpoint":
        raise UserError(f"teacher {name!r}: precision={cfg.precision} applies to checkpoint teachers only; "
                        f"this one is a {kind} teacher (use precision=fp32)")
    if kind == "checkpoint":
        return _load_checkpoint_teacher(name, cfg.path).with_precision(cfg.precision)
    if kind == "torchscript":
        return _load_torchscript_teacher(name, cfg.path)
    reg = _resolve_callable(name, cfg.callable)
    return FunctionTeacher(name, reg.fn, reg.action_meanings, reg.obs_shape)
