"""Live reload: what changed between two registries (`diff.py`) and watching the files
a config is made of (`watch.py`)."""
