"""Simulated days of production: a batch arrives, its traffic is served, labels come back late."""
