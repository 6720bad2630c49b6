"""runtime.learner_threads=0: the learner's thread count is measured (kickstart/runtime/threads.py)."""

from kickstart.runtime.threads import ThreadTuner


class Machine:
    """A learner whose training rate depends on its thread count, fed to the tuner update by update;
    successive ``run`` calls go on in time, as a machine whose load changes."""

    def __init__(self, tuner: ThreadTuner):
        self.tuner, self.now, self.frames = tuner, 0.0, 0.0

    def run(self, rate_of, seconds: float, dt: float = 0.25) -> list[tuple[float, int]]:
        """Updates every ``dt`` s for ``seconds`` at ``rate_of(threads)``; the switches the tuner made."""
        switches, end = [], self.now + seconds
        while self.now < end:
            self.now += dt
            self.frames += rate_of(self.tuner.threads) * dt
            n = self.tuner.update(self.now, int(self.frames))
            if n is not None:
                switches.append((self.now, n))
        return switches


def drive(tuner: ThreadTuner, rate_of, seconds: float = 120.0) -> list[tuple[float, int]]:
    return Machine(tuner).run(rate_of, seconds)


def test_keeps_adding_threads_while_each_is_a_clear_gain_then_stops():
    t = ThreadTuner(max_threads=4)
    switches = drive(t, {1: 1000, 2: 1600, 3: 1800, 4: 1810}.__getitem__)
    assert [n for _, n in switches] == [2, 3, 4, 3] and t.done and t.threads == 3
    assert switches[0][0] >= t.warmup_s + t.window_s          # nothing changes before a full window


def test_a_second_thread_that_does_not_pay_is_given_back():
    t = ThreadTuner(max_threads=2)
    switches = drive(t, {1: 60_000, 2: 52_000}.__getitem__)
    assert [n for _, n in switches] == [2, 1] and t.threads == 1 and set(t.rates) == {1, 2}


def test_a_tie_keeps_the_fewer_threads_and_one_core_never_tunes():
    t = ThreadTuner(max_threads=2)
    drive(t, {1: 1000, 2: 1030}.__getitem__)
    assert t.threads == 1 and t.done
    one = ThreadTuner(max_threads=1)
    assert drive(one, lambda n: 1000) == [] and one.done


def test_a_settled_count_stays_while_the_rate_only_wobbles():
    t = ThreadTuner(max_threads=2)
    m = Machine(t)
    m.run({1: 1000, 2: 2000}.__getitem__, seconds=60)
    assert t.threads == 2 and t.done
    wobble = lambda n: {1: 1000, 2: 2000}[n] * (1.3 if int(m.now / 45) % 2 else 0.8)   # +-30% swings
    assert m.run(wobble, seconds=600) == [] and t.threads == 2


def test_a_wobble_between_one_thread_and_the_most_stays_put_too():
    t = ThreadTuner(max_threads=3)
    m = Machine(t)
    rates = {1: 1000, 2: 2000, 3: 2050}
    m.run(rates.__getitem__, seconds=60)
    assert t.threads == 2 and t.done
    wobble = lambda n: rates[n] * (1.3 if int(m.now / 45) % 2 else 0.8)
    assert m.run(wobble, seconds=600) == [] and t.threads == 2


def test_a_drift_it_cannot_act_on_becomes_the_reference():
    t = ThreadTuner(max_threads=2)
    m = Machine(t)
    m.run({1: 800, 2: 1000}.__getitem__, seconds=60)
    assert t.threads == 2
    assert m.run({1: 2000, 2: 3000}.__getitem__, seconds=120) == []   # faster at the most: nothing to try
    assert t.rates[2] > 1000 * t.drift                 # the first window that saw the new rate
    # then a job takes the cores: 700 is within 1.5x of the first 1000, not of 3000
    switches = m.run({1: 2400, 2: 700}.__getitem__, seconds=120)
    assert [n for _, n in switches][:1] == [1] and t.threads == 1


def test_a_collapse_when_another_job_takes_the_cores_searches_again_and_gives_the_thread_back():
    t = ThreadTuner(max_threads=2)
    m = Machine(t)
    m.run({1: 2400, 2: 3400}.__getitem__, seconds=60)
    assert t.threads == 2
    # A population starts beside it: two intra-op threads across a contended core crawl.
    switches = m.run({1: 2400, 2: 150}.__getitem__, seconds=120)
    assert [n for _, n in switches] == [1, 2, 1] and t.threads == 1 and t.done
    assert switches[0][0] - 60 <= t.watch_s + 0.25        # noticed within one watch window
    assert m.run({1: 2400, 2: 150}.__getitem__, seconds=300) == []   # and it stays there


def test_cores_given_back_are_taken_again_but_a_slower_single_thread_has_nowhere_to_go():
    t = ThreadTuner(max_threads=2)
    m = Machine(t)
    m.run({1: 1000, 2: 200}.__getitem__, seconds=60)
    assert t.threads == 1 and t.done
    assert m.run({1: 400, 2: 100}.__getitem__, seconds=300) == []   # no smaller count to try
    switches = m.run({1: 2000, 2: 3400}.__getitem__, seconds=120)   # the other job ended
    assert [n for _, n in switches] == [2] and t.threads == 2 and t.done
