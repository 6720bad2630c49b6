"""How a user may spell a game or scenario name: case, ``_``, ``-`` and spaces do not count.

``"space_invaders"``, ``"SpaceInvaders"`` and ``"space-invaders"`` all have the key ``"spaceinvaders"``;
each env family looks its names up by this key (and suggests close keys for a typo).
"""


def name_key(name: str) -> str:
    """``name`` lower-cased, without ``_``, ``-`` or spaces."""
    return name.lower().replace("_", "").replace("-", "").replace(" ", "")
