import pytest

from relevo.durations import parse_duration_s


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("10s", 10.0), ("5m", 300.0), ("1h", 3600.0), (3, 3.0), (0.25, 0.25),
     ("1.5s", 1.5)],
)
def test_durations_read_as_seconds(text: object, seconds: float) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["10", "ten seconds", "5d", "-1s", True, None, -2])
def test_bad_durations_say_what_is_accepted(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration_s(text)
