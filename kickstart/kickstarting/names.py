"""Every name kickstarting gives to something outside it: hyperparameters and unroll fields.

One module, imported by the others (term, hooks, method, teachers), so that the actor side and the
learner side cannot disagree on a name and neither imports the other for it. Metric names
(``kickstart/<teacher>/kl``, ...) are the loss term's own and live there.
"""

from __future__ import annotations

import re

from kickstart.errors import UserError

ALPHA = "kickstart/alpha"
"""Mutable: the factor of every teacher's weight (Schmitt et al. 2018, Sec. 4.2: ``lambda^i = alpha rho^i``)."""

ACTOR_SHARE = "kickstart/actor_share"
"""Published to the actors (and logged): the share of its covered columns on which a split teacher
runs in the actor (:func:`kickstart.runtime.placement.actor_columns`); the learner runs it on the
others. The trainer's :class:`~kickstart.runtime.placement.Placement` moves it."""


def rho_name(teacher: str) -> str:
    """Mutable: teacher ``teacher``'s own factor ``rho``."""
    return f"kickstart/rho/{teacher}"


def lambda_name(teacher: str) -> str:
    """Published to the actors: teacher ``teacher``'s current weight (0: nobody runs it)."""
    return f"kickstart/lambda/{teacher}"


def field_name(teacher: str) -> str:
    """The unroll field of teacher ``teacher``'s log-probabilities over the student's actions
    (``[T+1, N, L_student]`` float32, NaN where not computed)."""
    return f"teacher_logits/{teacher}"


_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


def check_name(name: str) -> None:
    """A teacher's name goes into the names above and into metric names: a one-line UserError
    unless it is letters, digits, ``_``, ``-`` or ``.``."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise UserError(f"kickstart teacher name {name!r} must be letters, digits, '_', '-' or '.' "
                        f"(it names metrics such as kickstart/<name>/kl)")
