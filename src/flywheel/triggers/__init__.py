"""The trigger engine: one policy (`triggers:` in flywheel.yaml) that decides when to retrain.

`signals` judges each trigger (schedule, new data, drift, the task's metric on
delayed labels and its estimate before them, a code change) on what was read, `ledger` keeps the
engine's create-only books in the store (decisions, runs, holds), and `engine`
reads, judges, applies the safeguards and records one decision.
"""
