"""Analysis: raw tables -> summary sections (pure pandas/numpy; starts no process)."""
