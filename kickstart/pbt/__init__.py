"""Population Based Training (Jaderberg et al. 2017) for kickstarting and Mix & Match.

* :mod:`.decisions`: when a member is ready, whom it copies, how it explores -- pure functions of
  the population's evaluations and a random generator.
* :mod:`.member`: a member (one Trainer driven by commands); :mod:`.hosts`: ``pbt.backend`` -> host,
  and the hosts: a process per member (``pbt.backend=local``) or this process (``serial``);
  :mod:`.ray_host`: a Ray actor per member; :mod:`.protocol`: the commands and replies they share.
* :mod:`.controller`: starts the members, applies the decisions, writes the lineage
  (:mod:`.records`: the lineage, ``population.csv`` and the population's result).
* :mod:`.config`: the ``pbt`` config section (a core section of every run).

``kickstart train CONFIG pbt.population_size=4`` runs a population
(:func:`kickstart.pbt.controller.run_population`).

This ``__init__`` imports nothing: :mod:`kickstart.config` holds the ``pbt`` section
(:mod:`.config`), and importing that runs this file first, while the controller and the members
import :mod:`kickstart.config`; re-exporting them here would close that circle. Import from the
submodules.
"""
