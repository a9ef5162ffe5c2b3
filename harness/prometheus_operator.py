"""The Prometheus Operator (built by `make tools`) against the test control plane, and the
scrape configuration it generates, made runnable by a Prometheus on loopback.

The operator runs for real: it watches the ServiceMonitors and Prometheus objects
and writes each Prometheus' configuration into its Secret (`prometheus-<name>`,
prometheus.yaml.gz), as on a cluster. Its StatefulSet's pods never run (kwok); the
test runs the configuration with the real Prometheus instead, changed only in
what a pod in the cluster would have and a loopback process has not: the config
reloader's `$(SHARD)` and `$(POD_NAME)` expanded, the API server reached through a
kubeconfig instead of the service account, and each discovered address (a kwok pod
IP, which goes nowhere) sent to the loopback server standing in for that container
by one relabeling appended to each job, after the operator's own.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import yaml

from harness.servers import free_ports, stop, wait_until
from tools.build import asset_dir, binary


@contextlib.contextmanager
def prometheus_operator(kube: Any, namespace: str) -> Iterator[subprocess.Popen[bytes]]:
    """The operator with all its CRDs installed, watching `namespace`, stopped on exit."""
    crds = sorted((asset_dir("prometheus-operator") / "crds").glob("*.yaml"))
    for crd in crds:
        kube.kubectl("apply", "--server-side", "-f", str(crd))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    (port,) = free_ports(1)
    log = kube.work / f"prometheus-operator-{namespace}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(binary("prometheus-operator")),
                f"--namespaces={namespace}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log-level=info",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "KUBECONFIG": str(kube.kubeconfig)},
            start_new_session=True,
        )
    try:
        yield process
    finally:
        stop(process)


def generated_config(
    kube: Any, namespace: str, name: str, process: subprocess.Popen[bytes], jobs: int
) -> dict[str, Any]:
    """The scrape configuration the operator wrote for Prometheus `name`, once it has
    `jobs` ServiceMonitor jobs."""
    found: dict[str, Any] = {}

    def written() -> bool:
        secret = json.loads(
            kube.kubectl(
                "get", "secret", f"prometheus-{name}", "-n", namespace, "-o", "json"
            ).stdout
        )
        text = gzip.decompress(_b64(secret["data"]["prometheus.yaml.gz"])).decode()
        # What the config reloader expands in the pod: the shard and the pod's name.
        text = text.replace("$(SHARD)", "0").replace("$(POD_NAME)", f"prometheus-{name}-0")
        config = yaml.safe_load(text)
        found.update(config)
        return (
            sum(
                1
                for job in config.get("scrape_configs") or []
                if job["job_name"].startswith("serviceMonitor/")
            )
            == jobs
        )

    wait_until(
        written,
        60,
        f"the operator's configuration of Prometheus {namespace}/{name}",
        process,
        kube.work / f"prometheus-operator-{namespace}.log",
    )
    return found


def runnable(config: dict[str, Any], kubeconfig: str, addresses: dict[str, str]) -> dict[str, Any]:
    """`config` as a Prometheus on loopback runs it: discovery through `kubeconfig`, and
    each discovered address in `addresses` (pod IP:port) scraped at its stand-in."""
    config = json.loads(json.dumps(config))
    for job in config.get("scrape_configs") or []:
        for sd in job.get("kubernetes_sd_configs") or []:
            sd["kubeconfig_file"] = kubeconfig
        job.setdefault("relabel_configs", []).extend(
            {
                "source_labels": ["__address__"],
                "regex": address.replace(".", "\\."),
                "target_label": "__address__",
                "replacement": stand_in,
                "action": "replace",
            }
            for address, stand_in in addresses.items()
        )
    return config


def _b64(text: str) -> bytes:
    import base64

    return base64.b64decode(text)
