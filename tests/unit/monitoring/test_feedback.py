"""Which feedback can join a sample (`Keep`), and what a sampled request is called; the labels
of a look, joined and counted, are tested through `monitor` in test_monitor.py."""

from __future__ import annotations

import numpy as np

from flywheel.monitoring.feedback import Keep, request_name


def test_feedback_is_kept_when_its_request_is_sampled_or_may_yet_be() -> None:
    # given samples holding three keys, one of which holds only the keys below 1,000
    keep = Keep(np.array([5, 700, 5_000], dtype=np.uint64), below=1_000, every=False)
    keys = np.array([5, 6, 700, 999, 1_000, 5_000, 5_001, 2**63], dtype=np.uint64)
    # then a sampled key is kept, and so is any key below the threshold (its request may yet
    # be logged into the sample); the rest can never join and are dropped
    assert keep(keys).tolist() == [True, True, True, True, False, True, False, False]
    # and when every sample holds its whole window, all feedback is kept
    assert Keep(np.zeros(0, dtype=np.uint64), below=0, every=True)(keys).all()
    # and an empty sample keeps only what is below the threshold
    empty = Keep(np.zeros(0, dtype=np.uint64), below=10, every=False)
    assert empty(np.array([3, 10, 11], dtype=np.uint64)).tolist() == [True, False, False]


def test_a_sampled_request_is_named_by_its_key_in_sixteen_hex_digits() -> None:
    assert request_name(255) == "00000000000000ff"
    assert request_name(2**64 - 1) == "ffffffffffffffff"
