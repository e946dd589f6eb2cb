"""Entry IDs are "namespace:name"; a bare name means the referring entry's namespace."""

from __future__ import annotations


def entry_id(namespace: str, name: str) -> str:
    return f"{namespace}:{name}"


def resolve(reference: str, namespace: str) -> str:
    """Turn a reference as written in YAML into a full entry ID."""
    return reference if ":" in reference else entry_id(namespace, reference)


def split(full_id: str) -> tuple[str, str]:
    namespace, _, name = full_id.rpartition(":")
    return namespace, name
