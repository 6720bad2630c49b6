"""Where PBT members live: ``pbt.backend`` -> a host (apart from :mod:`.member`, which the Ray host imports)."""

from __future__ import annotations

from kickstart.config import Config
from kickstart.pbt.member import LocalHost, MemberHost, SerialHost


def make_host(backend: str, cfg: Config | None = None) -> MemberHost:
    """``pbt.backend``: ``local`` (a process per member), ``serial`` (this process) or ``ray`` (a Ray
    actor per member on the cluster ``cfg.ray`` names; :mod:`kickstart.pbt.ray_host`)."""
    if backend == "ray":
        from kickstart.pbt.ray_host import RayHost   # ray is an optional extra

        return RayHost(cfg if cfg is not None else Config())
    return SerialHost() if backend == "serial" else LocalHost()
