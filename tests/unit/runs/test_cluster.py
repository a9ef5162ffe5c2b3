"""Cluster runs against a loopback fake of KFP's v2beta1 API (KFP's server cannot run here):
which runs have ended, a run found by its run id, and the API's refusals as one SubmitError.

`flywheel submit` (the token, the image, the namespace) is tested in
tests/unit/cli/test_pipeline.py.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from flywheel.config import Settings
from flywheel.runs.cluster import SubmitError, ended_runs, run_status, submit
from harness.kfp import kfp_api


def test_only_runs_that_ended_are_reported_each_with_whether_it_succeeded(
    small_settings: Callable[..., Settings],
) -> None:
    # given three runs started on KFP
    settings = small_settings()
    with kfp_api(token=None) as kfp:
        started = [submit(settings, host=kfp.url)["kfp_run_id"] for _ in range(3)]
        # when one succeeded and one failed, then those two are reported and the third is not
        kfp.end(started[0], "SUCCEEDED")
        kfp.end(started[1], "FAILED")
        assert ended_runs(settings, host=kfp.url, kfp_run_ids=started) == {
            started[0]: True,
            started[1]: False,
        }
        # and asking about no runs asks KFP nothing
        asked = len(kfp.requests)
        assert ended_runs(settings, host=kfp.url, kfp_run_ids=[]) == {}
        assert len(kfp.requests) == asked


def test_a_refusal_is_one_error_with_the_status_and_the_servers_message(
    small_settings: Callable[..., Settings],
) -> None:
    with kfp_api(token=None) as kfp, pytest.raises(SubmitError) as refused:
        ended_runs(small_settings(), host=kfp.url, kfp_run_ids=["no-such-run"])
    assert str(refused.value) == (
        f"KFP at {kfp.url} refused the request: 404 Not Found: Run no-such-run not found"
    )


def test_a_run_is_found_by_its_run_id_the_newest_first(
    small_settings: Callable[..., Settings],
) -> None:
    # given two KFP runs named run-1 (the second a retry) and none named run-2
    settings = small_settings()
    with kfp_api(token=None) as kfp:
        submit(settings, host=kfp.url, run_id="run-1")
        retry = submit(settings, host=kfp.url, run_id="run-1")["kfp_run_id"]
        kfp.end(retry, "FAILED")
        # when each is asked for by its run id, then the newest of that name answers
        status = run_status(settings, host=kfp.url, run_id="run-1")
        assert status is not None and (status.state, status.ended) == ("FAILED", True)
        assert status.created_at.tzinfo is not None
        assert run_status(settings, host=kfp.url, run_id="run-2") is None
