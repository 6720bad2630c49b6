"""runtime.learner_threads=0: the learner's thread count is measured (kickstart/runtime/threads.py)."""

from kickstart.runtime.threads import ThreadTuner


def drive(tuner: ThreadTuner, rate_of, seconds: float = 120.0, dt: float = 0.25) -> list[tuple[float, int]]:
    """Feed the tuner updates every ``dt`` s at the rate ``rate_of(threads)``; the switches it made."""
    now, frames, switches = 0.0, 0.0, []
    while now < seconds:
        now += dt
        frames += rate_of(tuner.threads) * dt
        n = tuner.update(now, int(frames))
        if n is not None:
            switches.append((now, n))
    return switches


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


def test_it_decides_once_per_session():
    t = ThreadTuner(max_threads=2)
    drive(t, {1: 1000, 2: 2000}.__getitem__, seconds=60)
    assert t.threads == 2 and t.done
    assert drive(t, {1: 5000, 2: 10}.__getitem__, seconds=60) == []   # later changes in rate are not chased
