"""SeldonDeployment rendering: predictors, traffic, parameters, probes and a restricted security context."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from flywheel.config import Settings, load_settings
from flywheel.rollout import seldon
from flywheel.rollout.seldon import Arm, admission_errors, arms, render

SETTINGS = load_settings(
    None, env={}, overrides=["storage.uri=s3://models/flywheel", "storage.endpoint=minio:9000"]
)


def test_stable_and_canary_share_traffic() -> None:
    sdep = seldon.render(SETTINGS, arms("v3", "v4", 25))
    assert (sdep["apiVersion"], sdep["kind"]) == (
        "machinelearning.seldon.io/v1",
        "SeldonDeployment",
    )
    predictors = sdep["spec"]["predictors"]
    assert [
        (p["name"], p["traffic"], p["labels"]["flywheel.io/model-version"]) for p in predictors
    ] == [
        ("a", 75, "v3"),
        ("b", 25, "v4"),
    ]
    assert sum(p["traffic"] for p in predictors) == 100
    assert [
        p["name"] for p in seldon.render(SETTINGS, arms("v3", None, 0))["spec"]["predictors"]
    ] == ["a"]
    with pytest.raises(ValueError, match=r"within 0\.\.100"):
        seldon.render(SETTINGS, arms("v3", "v4", 120))


def test_model_name_and_version_are_graph_parameters() -> None:
    graph = seldon.render(SETTINGS, arms("v3", "v4", 10))["spec"]["predictors"][1]["graph"]
    params = {p["name"]: p["value"] for p in graph["parameters"]}
    assert (params["model_name"], params["model_version"], params["store_uri"]) == (
        "loan-default",
        "v4",
        "s3://models/flywheel",
    )
    assert graph["name"] == seldon.CONTAINER and graph["type"] == "MODEL"


def test_every_serving_setting_reaches_the_model_class_as_a_parameter() -> None:
    import inspect

    from flywheel.serving.model import FlywheelModel

    # given settings that bound the log at 1 MiB and log a tenth of requests
    settings = load_settings(
        None, env={}, overrides=["serving.log_max_bytes=1048576", "monitoring.log_sample=0.1"]
    )
    # when
    params = {p["name"]: p["value"] for p in seldon.parameters(settings, "v3")}
    # then the bound and the share reach the servers, and every parameter is one the class takes
    assert params["log_max_bytes"] == "1048576" and float(params["log_sample"]) == 0.1
    assert set(params) <= set(inspect.signature(FlywheelModel).parameters)


def test_every_pod_meets_the_restricted_pod_security_standard() -> None:
    for predictor in seldon.render(SETTINGS, arms("v3", "v4", 10))["spec"]["predictors"]:
        pod = predictor["componentSpecs"][0]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        (container,) = pod["containers"]
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]} and sc["runAsNonRoot"] is True
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/status"
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/ping"
        assert container["resources"]["limits"] == {"cpu": "1", "memory": "1Gi"}
        secret_refs = [e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e]
        assert {r["name"] for r in secret_refs} == {"flywheel-s3"}


def test_images_are_referenced_by_digest_when_one_is_given() -> None:
    digest = "sha256:" + "a" * 64
    pinned: Settings = SETTINGS.model_copy(
        update={
            "serving": SETTINGS.serving.model_copy(
                update={"image": "ghcr.io/x/serving:1.2", "image_digest": digest}
            )
        }
    )
    image = seldon.render(pinned, arms("v3", None, 0))["spec"]["predictors"][0]["componentSpecs"][
        0
    ]["spec"]["containers"][0]["image"]
    assert image == f"ghcr.io/x/serving@{digest}"
    assert seldon.image_reference(SETTINGS) == SETTINGS.serving.image


def test_what_flywheel_renders_passes_seldons_admission_rules() -> None:
    settings = Settings()
    for weight in (0, 10, 100):
        assert admission_errors(render(settings, arms("v1", "v2", weight))) == []
    assert admission_errors(render(settings, arms("v1", None, 0))) == []


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        (lambda p: p.__setitem__(1, {**p[1], "traffic": 5}), "traffic must sum to 100, not 95"),
        (
            lambda p: p.__setitem__(1, {**p[1], "name": "a"}),
            "predictor name 'a' is used twice",
        ),
        (lambda p: p.pop(), "a single predictor's traffic must be 100, not 90"),
        (lambda p: p.clear(), "there must be at least one predictor"),
        (
            lambda p: p[0]["graph"].__setitem__("name", "classifier"),
            "graph: node 'classifier' has no container of that name (containers: model)",
        ),
        (
            lambda p: p[0]["graph"].__setitem__("children", [{"name": "extra", "type": "MODEL"}]),
            "node 'extra' has no container",
        ),
    ],
)
def test_seldons_admission_rules_are_checked_before_sending(
    change: Callable[[list[dict[str, Any]]], object], refusal: str
) -> None:
    obj = render(Settings(), arms("v1", "v2", 10))
    change(obj["spec"]["predictors"])
    errors = admission_errors(obj)
    assert any(refusal in error for error in errors), errors


def _template(**annotations: str) -> dict[str, Any]:
    spec = seldon.pod(Settings()).spec
    return {
        "metadata": {"name": "fw-model", "uid": "u-1", "annotations": annotations},
        "template": {
            "spec": {
                **spec,
                "containers": [{**spec["containers"][0], "image": "m@sha256:" + "b" * 64}],
            }
        },
    }


def test_predictors_are_built_on_the_charts_pod_template() -> None:
    # given the chart's PodTemplate with its own image and three replicas
    pod = seldon.pod_from_template(_template(**{seldon.REPLICAS: "3"}), Settings())
    # when the controller renders a canary on it
    obj = seldon.render(Settings(), arms("v1", "v2", 25), pod)
    # then both predictors run that pod, and the template owns the object
    for p in obj["spec"]["predictors"]:
        assert p["replicas"] == 3
        assert p["componentSpecs"][0]["spec"]["containers"][0]["image"] == "m@sha256:" + "b" * 64
    assert obj["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "PodTemplate", "name": "fw-model", "uid": "u-1"}
    ]
    assert seldon.admission_errors(obj) == []


def test_a_pod_template_without_replicas_uses_the_configured_count_and_a_bad_one_is_named() -> None:
    assert seldon.pod_from_template(_template(), Settings()).replicas == Settings().serving.replicas
    with pytest.raises(
        ValueError, match=r"PodTemplate fw-model: annotation flywheel\.io/replicas is 'three'"
    ):
        seldon.pod_from_template(_template(**{seldon.REPLICAS: "three"}), Settings())


def test_slots_are_predictor_names_and_the_canary_takes_the_other_one() -> None:
    # given production served from slot b (the canary of the last rollout, promoted)
    wanted = arms("v4", "v5", 10, slot="b")
    # then the next canary goes into slot a, and each slot's pods carry its name
    assert wanted == (Arm("b", "v4", 90), Arm("a", "v5", 10))
    predictors = render(Settings(), wanted)["spec"]["predictors"]
    assert [(p["name"], p["labels"]["version"]) for p in predictors] == [("b", "b"), ("a", "a")]


def test_a_slot_that_goes_on_serving_its_version_keeps_its_pods_byte_for_byte() -> None:
    # given a canary of v2 in slot b, deployed on the chart's pod, at its last step
    old = seldon.pod_from_template(_template(**{seldon.REPLICAS: "3"}), Settings())
    live = render(Settings(), arms("v1", "v2", 50), old)
    canary_before = live["spec"]["predictors"][1]
    # when the chart's pod changes (a new image) and the canary is promoted: all the
    # traffic to its slot first, then the old slot retired
    new_template = _template(**{seldon.REPLICAS: "3"})
    new_template["template"]["spec"]["containers"][0]["image"] = "m@sha256:" + "c" * 64
    new = seldon.pod_from_template(new_template, Settings())
    moved = render(Settings(), arms("v1", "v2", 100), new, live)
    promoted = render(Settings(), arms("v2", None, 0, slot="b"), new, moved)
    # then the promoted predictor's pod and replicas are unchanged, byte for byte
    (after,) = promoted["spec"]["predictors"]
    for stage in (moved["spec"]["predictors"][1], after):
        assert json.dumps(stage["componentSpecs"], sort_keys=True) == json.dumps(
            canary_before["componentSpecs"], sort_keys=True
        )
        assert stage["replicas"] == canary_before["replicas"] == 3
    assert (after["name"], after["traffic"]) == ("b", 100)
    # and capacity never dropped: while the traffic moved, both slots ran their replicas
    assert [p["replicas"] for p in moved["spec"]["predictors"]] == [3, 3]
    # while a slot that is new, or changes version, takes the chart's current pod
    fresh = render(Settings(), arms("v2", "v3", 10, slot="b"), new, promoted)
    image = fresh["spec"]["predictors"][1]["componentSpecs"][0]["spec"]["containers"][0]["image"]
    assert image == "m@sha256:" + "c" * 64


def test_a_refused_pod_reaches_no_new_slot_until_the_charts_pod_changes() -> None:
    # given v1 served from slot a on its pod, and the chart's newer pod refused (its canary
    # was rolled back)
    old = seldon.pod_from_template(_template(), Settings())
    served = render(Settings(), arms("v1", None, 0), old)
    newer_template = _template()
    newer_template["template"]["spec"]["containers"][0]["image"] = "m@sha256:" + "d" * 64
    newer = seldon.pod_from_template(newer_template, Settings())
    refused = seldon.pod_hash(newer.spec)
    # when a canary of v2 takes the free slot
    canary = render(Settings(), arms("v1", "v2", 10), newer, served, refused)
    # then it runs production's pod, not the refused one, and the refusal is kept
    a, b = canary["spec"]["predictors"]
    assert (
        b["componentSpecs"]
        == a["componentSpecs"]
        == served["spec"]["predictors"][0]["componentSpecs"]
    )
    annotations = canary["metadata"]["annotations"]
    assert annotations[seldon.REFUSED_POD] == refused
    assert annotations[seldon.pod_hash_key("b")] == annotations[seldon.pod_hash_key("a")]
    # and once the chart's pod changes again, a new slot takes it
    newest_template = _template()
    newest_template["template"]["spec"]["containers"][0]["image"] = "m@sha256:" + "e" * 64
    newest = seldon.pod_from_template(newest_template, Settings())
    later = render(Settings(), arms("v1", "v2", 10), newest, served, refused)
    image = later["spec"]["predictors"][1]["componentSpecs"][0]["spec"]["containers"][0]["image"]
    assert image == "m@sha256:" + "e" * 64
