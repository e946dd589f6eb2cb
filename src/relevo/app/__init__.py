"""The composition root: the one package that builds every layer from a registry.

`application.py` is the API (`App`, `load`); the modules beside it are its parts.
"""

from relevo.app.application import App, load
from relevo.app.functions import check_functions

__all__ = ["App", "check_functions", "load"]
