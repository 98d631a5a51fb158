"""Simulation: cohorts, the bundled demo, calibration of the tests, the scoring benchmark."""
