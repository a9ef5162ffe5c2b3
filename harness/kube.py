"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, controller-manager,
scheduler, and kwok faking the nodes and the pods' lifecycles.

Everything runs from the binaries `make tools` builds. Nothing here pretends to
be an API server: requests go to a real kube-apiserver backed by a real etcd,
with RBAC and Pod Security admission on. What is fake is only what cannot run
here: kubelets and containers (kwok moves pods to Running without starting them).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness.schemas import with_refs_inlined
from harness.servers import free_ports, stop, wait_until
from tools.build import asset_dir, binary

HERE = Path(__file__).resolve().parent
SELDON_CRD_TEMPLATE = HERE / "crds" / "machinelearning.seldon.io_seldondeployments.yaml"
ARGO_CRDS = (
    "argoproj.io_workflows.yaml",
    "argoproj.io_cronworkflows.yaml",
    "argoproj.io_workflowtemplates.yaml",
    "argoproj.io_workflowtaskresults.yaml",
)


@dataclass
class ControlPlane:
    """A running control plane and how to reach it."""

    kubeconfig: Path
    server: str
    work: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, as_user: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this control plane."""
        command = [str(binary("kubectl")), f"--kubeconfig={self.kubeconfig}", *args]
        if as_user:
            command.append(f"--as={as_user}")
        result = subprocess.run(
            command, input=input, capture_output=True, text=True, check=False, timeout=120
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
        return result

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the real helm against this control plane."""
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "HELM_CACHE_HOME": str(self.work / "helm-cache"),
            "HELM_CONFIG_HOME": str(self.work / "helm-config"),
            "HELM_DATA_HOME": str(self.work / "helm-data"),
        }
        result = subprocess.run(
            [str(binary("helm")), *args],
            capture_output=True,
            text=True,
            check=False,
            env=env,
            timeout=600,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}\n{self.diagnosis()}"
            )
        return result

    def diagnosis(self) -> str:
        """What a failed wait needs to be understood: the processes, nodes, pods and events."""
        parts = [
            "control plane: "
            + ", ".join(
                f"{name} {'running' if p.poll() is None else f'exited {p.returncode}'}"
                for name, p in self.processes.items()
            )
        ]
        for args in (
            ("get", "nodes", "-o", "wide"),
            ("get", "pods", "-A", "-o", "wide"),
            ("get", "events", "-A", "--sort-by=.lastTimestamp"),
        ):
            shown = self.kubectl(*args, check=False)
            parts.append(f"$ kubectl {' '.join(args)}\n{shown.stdout[-3000:]}{shown.stderr[-500:]}")
        for name in ("kube-scheduler", "kube-controller-manager", "kwok"):
            log = self.work / f"{name}.log"
            if log.exists():
                parts.append(
                    f"{name}.log (tail):\n"
                    + "\n".join(log.read_text(errors="replace").splitlines()[-15:])
                )
        return "\n".join(parts)

    def crd_files(self, schemas: bool = False) -> list[Path]:
        """Every CRD the chart's objects need: Seldon's, Argo's, the ServiceMonitor and the PrometheusRule.

        Argo v3 publishes minimal CRDs to install and full ones whose schemas are not
        structural (the API server refuses them) but describe every field: `schemas`
        picks the full ones, for kubeconform.
        """
        argo = asset_dir("argo") / "crds" / ("full" if schemas else "minimal")
        monitoring = asset_dir("prometheus-operator") / "crds"
        return [
            self.seldon_crd(),
            *(argo / name for name in ARGO_CRDS),
            monitoring / "monitoring.coreos.com_servicemonitors.yaml",
            monitoring / "monitoring.coreos.com_prometheusrules.yaml",
        ]

    def seldon_crd(self) -> Path:
        """The SeldonDeployment CRD: the template with its pod spec's `$ref` inlined from
        this API server's own /openapi/v3/api/v1, so a model's pod is checked as a Pod is."""
        path = self.work / SELDON_CRD_TEMPLATE.name
        if not path.exists():
            served = json.loads(self.kubectl("get", "--raw=/openapi/v3/api/v1").stdout)
            template = yaml.safe_load(SELDON_CRD_TEMPLATE.read_text())
            crd = with_refs_inlined(template, served["components"]["schemas"])
            path.write_text(yaml.safe_dump(crd, sort_keys=False))
        return path


def _certificates(work: Path) -> dict[str, Path]:
    """A CA, the API server's serving certificate, an admin client certificate and the service-account keys."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def key() -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def write_key(name: str, k: rsa.RSAPrivateKey) -> Path:
        path = work / name
        path.write_bytes(
            k.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        return path

    def write_cert(name: str, cert: x509.Certificate) -> Path:
        path = work / name
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    ca_key = key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flywheel-test-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )

    def issue(
        common: str,
        org: str | None,
        sans: list[x509.GeneralName] | None,
        usage: x509.ObjectIdentifier,
    ) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
        k = key()
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common)]
        if org:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(ca_name)
            .public_key(k.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return k, builder.sign(ca_key, hashes.SHA256())

    from cryptography.x509.oid import ExtendedKeyUsageOID

    server_key, server = issue(
        "kube-apiserver",
        None,
        [
            x509.DNSName("localhost"),
            x509.DNSName("kubernetes"),
            x509.DNSName("kubernetes.default.svc"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("10.96.0.1")),
        ],
        ExtendedKeyUsageOID.SERVER_AUTH,
    )
    admin_key, admin = issue(
        "flywheel-admin", "system:masters", None, ExtendedKeyUsageOID.CLIENT_AUTH
    )
    sa_key = key()
    sa_pub = work / "sa.pub"
    sa_pub.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return {
        "ca.crt": write_cert("ca.crt", ca),
        "ca.key": write_key("ca.key", ca_key),
        "server.crt": write_cert("server.crt", server),
        "server.key": write_key("server.key", server_key),
        "admin.crt": write_cert("admin.crt", admin),
        "admin.key": write_key("admin.key", admin_key),
        "sa.key": write_key("sa.key", sa_key),
        "sa.pub": sa_pub,
    }


def _kubeconfig(path: Path, server: str, certs: dict[str, Path]) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "flywheel-test",
        "clusters": [
            {
                "name": "flywheel-test",
                "cluster": {"server": server, "certificate-authority": str(certs["ca.crt"])},
            }
        ],
        "users": [
            {
                "name": "admin",
                "user": {
                    "client-certificate": str(certs["admin.crt"]),
                    "client-key": str(certs["admin.key"]),
                },
            }
        ],
        "contexts": [
            {"name": "flywheel-test", "context": {"cluster": "flywheel-test", "user": "admin"}}
        ],
    }
    path.write_text(json.dumps(config))


@contextlib.contextmanager
def control_plane(nodes: int = 2) -> Iterator[ControlPlane]:
    """Start the whole control plane, install the CRDs Flywheel uses, and tear it all down on exit."""
    work = Path(tempfile.mkdtemp(prefix="flywheel-kube-"))
    certs = _certificates(work)
    etcd_client, etcd_peer, api_port, scheduler_port, controller_port, kwok_port = free_ports(6)
    server = f"https://127.0.0.1:{api_port}"
    kubeconfig = work / "kubeconfig"
    _kubeconfig(kubeconfig, server, certs)
    plane = ControlPlane(kubeconfig=kubeconfig, server=server, work=work)

    def start(name: str, command: list[str]) -> subprocess.Popen[bytes]:
        log = work / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=work
            )
        plane.processes[name] = process
        return process

    try:
        etcd = start(
            "etcd",
            [
                str(binary("etcd")),
                f"--data-dir={work / 'etcd'}",
                "--name=flywheel",
                f"--listen-client-urls=http://127.0.0.1:{etcd_client}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_client}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-cluster=flywheel=http://127.0.0.1:{etcd_peer}",
                "--log-level=warn",
                "--quota-backend-bytes=1073741824",
            ],
        )
        wait_until(
            lambda: _http_ok(f"http://127.0.0.1:{etcd_client}/health"),
            60,
            "etcd",
            etcd,
            work / "etcd.log",
        )
        apiserver = start(
            "kube-apiserver",
            [
                str(binary("kube-apiserver")),
                f"--etcd-servers=http://127.0.0.1:{etcd_client}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--tls-cert-file={certs['server.crt']}",
                f"--tls-private-key-file={certs['server.key']}",
                f"--client-ca-file={certs['ca.crt']}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={certs['sa.pub']}",
                f"--service-account-signing-key-file={certs['sa.key']}",
                "--authorization-mode=Node,RBAC",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--allow-privileged=false",
                "--v=1",
                # Loopback cannot be the kubernetes Service endpoint; nothing here needs one.
                "--endpoint-reconciler-type=none",
            ],
        )
        wait_until(
            lambda: plane.kubectl("get", "--raw=/readyz", check=False).returncode == 0,
            120,
            "kube-apiserver",
            apiserver,
            work / "kube-apiserver.log",
        )
        start(
            "kube-controller-manager",
            [
                str(binary("kube-controller-manager")),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--service-account-private-key-file={certs['sa.key']}",
                f"--root-ca-file={certs['ca.crt']}",
                f"--cluster-signing-cert-file={certs['ca.crt']}",
                f"--cluster-signing-key-file={certs['ca.key']}",
                "--use-service-account-credentials=true",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={controller_port}",
                "--v=1",
            ],
        )
        start(
            "kube-scheduler",
            [
                str(binary("kube-scheduler")),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={scheduler_port}",
                "--v=1",
            ],
        )
        stages = sorted((asset_dir("kwok") / "stages").glob("*.yaml"))
        start(
            "kwok",
            [
                str(binary("kwok")),
                f"--kubeconfig={kubeconfig}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--node-ip=10.0.0.1",
                "--cidr=10.0.0.1/24",
                f"--node-port={kwok_port}",
                # Renew each node's Lease, as kwokctl has kwok do (the binary's default, 0,
                # renews none): the heartbeat stage rewrites a node's status only every 10
                # minutes, so without a Lease the node controller marks nodes NotReady after
                # its 50 s grace period, and their pods with them.
                "--node-lease-duration-seconds=40",
                *(f"--config={s}" for s in stages),
            ],
        )
        plane.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps(
                {"apiVersion": "v1", "kind": "List", "items": [_node(i) for i in range(nodes)]}
            ),
        )
        for crd in plane.crd_files():
            plane.kubectl("apply", "--server-side", "-f", str(crd))
        plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        wait_until(
            lambda: _nodes_ready(plane, nodes),
            60,
            "kwok nodes",
            plane.processes["kwok"],
            work / "kwok.log",
        )
        wait_until(
            lambda: bool(
                plane.kubectl(
                    "get", "serviceaccount", "default", "-n", "default", check=False
                ).returncode
                == 0
            ),
            60,
            "the service-account controller",
            plane.processes["kube-controller-manager"],
            work / "kube-controller-manager.log",
        )
        yield plane
    finally:
        for name in reversed(list(plane.processes)):
            stop(plane.processes[name])
        shutil.rmtree(work, ignore_errors=True)


def _http_ok(url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)


def _node(i: int) -> dict[str, object]:
    name = f"kwok-node-{i}"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "status": {
            "allocatable": {"cpu": "16", "memory": "64Gi", "pods": "110"},
            "capacity": {"cpu": "16", "memory": "64Gi", "pods": "110"},
        },
    }


def _nodes_ready(plane: ControlPlane, count: int) -> bool:
    out = plane.kubectl("get", "nodes", "-o", "json", check=False)
    if out.returncode != 0:
        return False
    ready = [
        n
        for n in json.loads(out.stdout)["items"]
        if any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in n.get("status", {}).get("conditions", [])
        )
    ]
    if len(ready) < count:
        return False
    # and each has the Lease kwok renews, without which the node controller marks it
    # NotReady after its grace period, mid-test
    leases = plane.kubectl("get", "leases", "-n", "kube-node-lease", "-o", "json", check=False)
    return leases.returncode == 0 and len(json.loads(leases.stdout)["items"]) >= count


if __name__ == "__main__":  # `python -m harness.kube`: a control plane to poke at by hand
    with control_plane() as plane:
        print(f"export KUBECONFIG={plane.kubeconfig}   # Ctrl-C stops everything")
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
