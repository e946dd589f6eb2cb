import random

from relevo.backoff import Backoff


def test_delays_grow_by_the_factor_up_to_the_cap() -> None:
    backoff = Backoff(initial_delay_s=1, max_delay_s=10, factor=2, jitter=0)
    assert [backoff.delay_s(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_jitter_stays_within_its_fraction() -> None:
    backoff = Backoff(initial_delay_s=4, max_delay_s=90, factor=2, jitter=0.25)
    rand = random.Random(7)
    delays = [backoff.delay_s(1, rand) for _ in range(500)]
    assert min(delays) >= 3.0
    assert max(delays) <= 5.0
    assert max(delays) - min(delays) > 1.0


def test_zero_max_attempts_never_gives_up() -> None:
    assert not Backoff(max_attempts=0).gives_up(10_000)
    assert Backoff(max_attempts=3).gives_up(4)
    assert not Backoff(max_attempts=3).gives_up(3)
