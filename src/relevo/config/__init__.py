"""From YAML files to a validated registry: yaml_source (files, lines, env, file://),
models (one per kind), checks (across entries), explain (pydantic's errors as what is
allowed), build (all of it, every error at once)."""
