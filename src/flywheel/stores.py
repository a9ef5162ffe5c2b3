"""What one process reaches, each opened once: the models' store, with the registry and the
trigger engine's books on it, and the batch source.

The edges build one from the settings (a CLI command, a pipeline step, a simulated world)
and hand its objects down; the library below them takes a Registry, a BatchSource or a
Ledger as a parameter and never opens a store from the settings again.
"""

from __future__ import annotations

from functools import cached_property

from flywheel.batches import BatchSource
from flywheel.config import Settings
from flywheel.registry import Registry
from flywheel.storage import ObjectStore, open_store
from flywheel.triggers.ledger import Ledger


class Stores:
    """The stores `settings` name; each is opened at its first use, then kept."""

    def __init__(self, settings: Settings) -> None:
        self.storage = settings.storage
        self.model_name = settings.model_name
        self.data = settings.data

    @cached_property
    def models(self) -> ObjectStore:
        """The store of the registry, the logs, the monitoring records and the engine's books."""
        return open_store(self.storage.uri, self.storage)

    @cached_property
    def registry(self) -> Registry:
        """The configured model's registry."""
        return Registry(self.models, self.model_name)

    @cached_property
    def ledger(self) -> Ledger:
        """The trigger engine's books of the configured model."""
        return Ledger(self.models, self.model_name)

    @cached_property
    def source(self) -> BatchSource:
        """The dated batches of data.source, in data.format."""
        if self.data.source == self.storage.uri:
            return BatchSource(self.models, self.data.format)
        return BatchSource(open_store(self.data.source, self.storage), self.data.format)
