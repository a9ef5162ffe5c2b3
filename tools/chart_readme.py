"""Generate helm/flywheel/README.md from values.yaml's `# --` comments (helm-docs style).

python -m tools.chart_readme            # write the README
python -m tools.chart_readme --check    # exit 1 if it is stale
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from tools.generated import write_or_check

CHART = Path(__file__).resolve().parents[1] / "helm" / "flywheel"

HEADER = """# flywheel Helm chart

{description}

Generated from `values.yaml` by `make chart-docs`; do not edit by hand.

Requires Kubernetes `{kube}`, Seldon Core v1 (its `SeldonDeployment` CRD) and
Kubeflow Pipelines with Argo Workflows (its `CronWorkflow` CRD). Values are
checked against `values.schema.json` at `helm install` and `helm template`.

```console
kubectl create namespace flywheel
kubectl -n flywheel create secret generic flywheel-s3 \\
  --from-literal=AWS_ACCESS_KEY_ID=... --from-literal=AWS_SECRET_ACCESS_KEY=...
helm install flywheel helm/flywheel -n flywheel --set-file config=flywheel.yaml \\
  --set storage.uri=s3://flywheel/registry --set storage.endpoint=minio.kubeflow:9000
helm test flywheel -n flywheel
```

## Values

| Key | Type | Default | Description |
|-----|------|---------|-------------|
"""


def _rows(path: Path) -> list[tuple[str, str, str, str]]:
    values = yaml.safe_load(path.read_text())
    rows = []
    stack: list[tuple[int, str]] = []
    comment: list[str] = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        stripped = line.strip()
        if stripped.startswith("# --"):
            comment = [stripped[4:].strip()]
            continue
        if stripped.startswith("#"):
            if comment:
                comment.append(stripped.lstrip("# "))
            continue
        match = re.match(r"([A-Za-z0-9_]+):", stripped)
        if not match:
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = ".".join([k for _, k in stack] + [match.group(1)])
        stack.append((indent, match.group(1)))
        if comment:
            value: Any = values
            for part in key.split("."):
                value = value[part]
            kind = {
                bool: "bool",
                int: "int",
                float: "float",
                str: "string",
                list: "list",
                dict: "object",
            }[type(value)]
            rows.append((key, kind, json.dumps(value), " ".join(comment)))
            comment = []
    return rows


def render() -> str:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    text = HEADER.format(
        description=" ".join(chart["description"].split()), kube=chart["kubeVersion"]
    )
    for key, kind, default, description in _rows(CHART / "values.yaml"):
        text += f"| `{key}` | {kind} | `{default}` | {description} |\n"
    return text


def main(argv: list[str]) -> int:
    return write_or_check(CHART / "README.md", render(), "chart-docs", argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
