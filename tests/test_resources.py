"""runtime.num_actors=0: actors chosen from the cores (kickstart/runtime/resources.py)."""

from kickstart.methods import load_config
from kickstart.pbt.controller import member_config
from kickstart.runtime.resources import auto_actors, available_cores, resolve_runtime


def test_auto_actors_leave_a_core_to_the_learner_and_share_cores_in_a_population():
    assert [auto_actors(c) for c in (1, 2, 3, 4, 16)] == [2, 2, 2, 3, 15]
    assert [auto_actors(16, m) for m in (2, 4, 8, 16, 32)] == [7, 3, 1, 1, 1]
    assert auto_actors(2, 2) == 1


def test_resolution_fills_only_an_unset_count_and_keeps_the_config_unresolved():
    cfg = load_config(None, [])
    assert cfg.runtime.num_actors == 0                     # the default: resolved per machine
    resolved = resolve_runtime(cfg, cores=6)
    assert resolved.runtime.num_actors == 5 and cfg.runtime.num_actors == 0
    explicit = load_config(None, ["runtime.num_actors=3"])
    assert resolve_runtime(explicit, cores=64) is explicit
    assert resolve_runtime(cfg).runtime.num_actors == auto_actors(available_cores())


def test_population_members_get_their_share():
    cfg = load_config(None, ["pbt.population_size=4"])
    m = member_config(cfg, 2)
    assert m.runtime.num_actors == auto_actors(available_cores(), 4) and m.runtime.seed == cfg.runtime.seed + 2
