"""The command protocol between the PBT controller and a member, wherever the member runs.

Every host (:mod:`kickstart.pbt.member`'s serial and process hosts, :mod:`kickstart.pbt.ray_host`)
answers a command with ``("ok", result)`` or ``("error", payload)``; these helpers build and read
those replies, so that a failure reads the same from every host.
"""

from __future__ import annotations

import pickle
import traceback
from typing import Any

from kickstart.errors import UserError

COMMANDS = ("hparams", "run_until", "save", "restore", "set_hparams", "samples", "close")


class MemberDied(RuntimeError):
    """The member's process ended while a command was in flight (or before it could take one)."""


class MemberError(RuntimeError):
    """A command failed inside a member (a bug); the message holds the member's traceback."""


def claim(index: int, pending: str | None, command: str) -> str:
    """Check that member ``index`` is idle and ``command`` exists; the command now pending."""
    assert pending is None, f"member {index} is busy with {pending}"
    if command not in COMMANDS:
        raise ValueError(f"unknown member command {command!r}")
    return command


def raise_reply(index: int, command: str, status: str, payload: Any) -> Any:
    """The result of a reply, or its error raised: a member's UserError as it is, anything else as a
    :class:`MemberError` carrying the member's traceback."""
    if status == "ok":
        return payload
    exc, text = payload
    if isinstance(exc, UserError):
        raise exc
    raise MemberError(f"member {index} failed in {command}: {text}")


def error_payload(e: BaseException) -> tuple[BaseException | None, str]:
    """What an ``("error", ...)`` reply carries: the exception (when it pickles) and its traceback."""
    text = "".join(traceback.format_exception(type(e), e, e.__traceback__)).rstrip()
    try:
        pickle.dumps(e)
        return e, text
    except Exception:  # noqa: BLE001 - an unpicklable exception travels as text only
        return None, text
