"""Mix & Match (Czarnecki et al. 2018): agent curricula over action spaces, cores and tasks.

An agent made of K policies pi_1 (simple) .. pi_K (the target) acts with the explicit mixture
``pi_mm = sum_i w_i pi_i`` and is trained with the IMPALA loss on pi_mm plus
``lambda (1 - alpha) KL(pi_1 || pi_2)`` on its own (control-policy) trajectories. alpha moves from 0
(pi_1 acts) to 1 (only pi_K acts) by a schedule or by PBT (``pbt.mutable.mixmatch/alpha``, explored
by +-``pbt.add_step`` within [0, 1]), and the target is then exported alone.

It plugs into the one learner through :class:`.method.MixMatch` (a :class:`kickstart.method.Method`,
registered below): a network (:class:`.net.MixMatchNet`, the agent when ``mixmatch.components`` is
set), a loss term (:class:`.term.MixMatchTerm`) and the target agent as the exported policy. No actor hook: the network is the behaviour policy, and its alpha
travels with the parameters.

Mixing (``mixmatch.mixing``): ``explicit`` (the paper's) acts with ``pi_mm``. ``sampled`` draws a
selector ``c ~ w`` per env and step and acts with ``pi_c``; the network records ``c`` (the generic
``extras["record"]`` mechanism of :mod:`kickstart.runtime.unroll`) in the one extra unroll field,
``mixmatch/selector``, and the learner trains ``pi_c`` on each step with the recorded ``c``:
V-trace's target and behaviour log-probabilities and the entropy bonus are those of ``pi_c``. As
``E[grad log pi_c(a) | a] = grad log pi_mm(a)`` this is an unbiased, noisier estimate of the
explicit-mixing policy gradient (derived in :func:`kickstart.losses.mixmatch.select`). The value
head (the value of the control policy) and the distillation term are the same in both modes. A
change of alpha between acting and learning is not importance-corrected in sampled mode (c is
treated as part of the state), whereas explicit mode's ``pi_mm`` ratio includes it.

Curricula (shipped configs under ``configs/mixmatch/``):

* action spaces: pi_1 over a small action set (``action_set: minimal``) mapped by meaning into the
  target's full space (on Atari the 18 actions factorised as joystick x fire);
* cores: a feed-forward pi_1 and an LSTM pi_2 sharing the torso;
* multitask: per-task specialists (``per_task: true``, own cores, shared torso) and a central
  target; each env's control policy mixes its task's specialist with the central policy, and PBT
  scores the central policy alone (``pbt.eval: auto`` picks ``evaluator`` for such an agent).

For K > 2 the mixture weights walk the chain (:func:`kickstart.losses.mixmatch.chain_weights`) and
the distillation term sums over adjacent pairs, each weighted by the mixture weight still on its
simpler side (:func:`kickstart.losses.mixmatch.pair_weights`; ``1 - alpha`` for K = 2), so that a
pair's term vanishes once its simpler policy no longer acts. Each component's actions must be a
subset of the next one's, or the KL would be infinite.
"""

from __future__ import annotations

from kickstart.method import register
from kickstart.mixmatch.method import MixMatch
from kickstart.mixmatch.term import MixMatchTerm, alpha_value, default_lambda

__all__ = ["METHOD", "MixMatch", "MixMatchTerm", "alpha_value", "build", "default_lambda"]

METHOD = register(MixMatch())


def build(cfg, spec):
    """The M&M pieces of run ``cfg`` on env ``spec`` (:meth:`MixMatch.setup`)."""
    return METHOD.setup(cfg, spec)
