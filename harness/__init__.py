"""What the tests and benchmarks share: real servers on loopback (S3, seldon-core, Prometheus, a
Kubernetes control plane), their clients, small real projects, and records built by hand."""

import pkgutil

import pytest

# Under pytest, the helpers' asserts explain a failure as a test's own do: pytest rewrites each
# module here when it is imported.
pytest.register_assert_rewrite(*(f"{__name__}.{m.name}" for m in pkgutil.iter_modules(__path__)))
