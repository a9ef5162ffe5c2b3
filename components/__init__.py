"""Kubeflow Pipelines v2 components: thin typed wrappers over flywheel.tasks."""
