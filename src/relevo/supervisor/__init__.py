"""Supervision: start entries in dependency order, stop them in reverse, restart on failure."""
