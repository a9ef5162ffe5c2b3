"""Real servers on loopback that the tests (and benchmarks) start: S3, seldon-core, a Kubernetes control plane."""
