"""Virtual-time simulation: exact poll outcomes, simulated fleets, calibration (no process, no network)."""
