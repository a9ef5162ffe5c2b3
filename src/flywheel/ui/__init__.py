"""`flywheel ui`: a read-only web UI over the store (versions, aliases, rollouts, triggers,
monitoring and runs)."""
