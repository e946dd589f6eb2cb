import pytest

from relevo.consumer.settle import describe, nack_reason


@pytest.mark.parametrize("result", [None, True, 0, "", [], {}, "ok", {"done": 1}])
def test_any_result_but_false_or_an_exception_acks(result: object) -> None:
    assert nack_reason(result) is None


def test_false_and_returned_exceptions_nack_with_a_reason() -> None:
    assert nack_reason(False) == "handler returned False"
    assert nack_reason(ValueError("bad input")) == "ValueError: bad input"
    assert describe(KeyError()) == "KeyError"
