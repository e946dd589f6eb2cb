"""The public API is what users import; this test holds it in place."""

import relevo
from relevo import errors


def test_the_top_level_exports_are_exactly_the_curated_api() -> None:
    assert sorted(relevo.__all__) == [
        "App", "Delivery", "Reject", "Retry", "errors", "load", "message", "publish",
        "publish_sync",
    ]
    for name in relevo.__all__:
        assert hasattr(relevo, name), name


def test_every_error_derives_from_relevo_error() -> None:
    names = ["ConfigError", "QueueNotFound", "QueueFull", "PublishError", "DriverUnavailable",
             "NoDeliveryContext", "StopTimeout"]
    for name in names:
        assert issubclass(getattr(errors, name), errors.RelevoError), name
    assert issubclass(errors.QueueFull, errors.PublishError)
