"""Population Based Training (Jaderberg et al. 2017) for kickstarting and Mix & Match.

* :mod:`.decisions`: when a member is ready, whom it copies, how it explores -- pure functions of
  the population's evaluations and a random generator.
* :mod:`.member`: a member (one Trainer driven by commands) and its hosts: a process per member
  (``pbt.backend=local``) or this process (``serial``); :mod:`.ray_host`: a Ray actor per member;
  :mod:`.hosts`: ``pbt.backend`` -> host; :mod:`.protocol`: the commands and replies they share.
* :mod:`.controller`: starts the members, applies the decisions, writes the lineage.

``kickstart train CONFIG pbt.population_size=4`` runs a population (:func:`run_population`).
"""

from kickstart.pbt.controller import Controller, PopulationResult, run_population
from kickstart.pbt.decisions import choose_donor, explore, is_ready, sample_initial
from kickstart.pbt.member import Member, MemberReport, MemberSpec

__all__ = ["Controller", "Member", "MemberReport", "MemberSpec", "PopulationResult", "choose_donor", "explore",
           "is_ready", "run_population", "sample_initial"]
