"""Lua handler functions, run in-process on lupa."""
