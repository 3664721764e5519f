"""Locust scenarios (locustfiles) that drive load against the hookbench servers."""
