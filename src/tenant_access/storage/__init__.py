"""Persistence: the storage port and its adapters."""

from tenant_access.storage.base import Store, open_store

__all__ = ["Store", "open_store"]
