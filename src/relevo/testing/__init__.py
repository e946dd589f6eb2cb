"""Testing handlers and applications without a broker.

- `in_memory(source)`: the application with every broker driver swapped for a memory
  driver; `await app.join()` waits until its work is done; `app.clock.advance(s)`
  moves the time its delays and retries go by.
- `delivery(body, headers=None, attempts=1)`: `relevo.message()` for a handler called
  as a plain function in a unit test.
- The pytest plugin (`relevo.testing.plugin`): the `relevo_app` fixture and marker.
"""

from relevo.testing.clock import ManualClock
from relevo.testing.delivery import TestDelivery, delivery
from relevo.testing.in_memory import in_memory

__all__ = ["ManualClock", "TestDelivery", "delivery", "in_memory"]
