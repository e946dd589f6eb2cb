"""Backends that store and move messages. `base.py` is the contract they all keep."""
