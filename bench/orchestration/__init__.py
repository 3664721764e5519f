"""Orchestration: starts servers and Locust as processes, runs scenarios, load ramps, sweeps, reproductions."""
