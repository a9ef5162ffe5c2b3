"""Pinned infrastructure binaries built from the Go module proxy, for tests and checks only.

Nothing here ships in Flywheel's images; `make tools` builds each binary once
into a cache outside the repository (FLYWHEEL_TOOLS_DIR, keyed by version).
"""
