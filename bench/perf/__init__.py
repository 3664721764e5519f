"""The harness's own load benchmark (`make bench`); not part of the core."""
