"""Assembling the parts a running server needs from its settings, in one place."""

from __future__ import annotations

from tenant_access.config import Settings
from tenant_access.storage.base import Store, open_store


def open_store_for(settings: Settings) -> Store:
    """The configured store, encrypting under the configured master key.

    There is no plaintext fallback: a missing key file is created (first start), a wrong key makes
    the store refuse to open.
    """
    from tenant_access.security.encryption import Keyring, load_master_key

    keyring = Keyring(load_master_key(settings.data_dir, settings.master_key))
    return open_store(settings.database_url, settings.data_dir, keyring)
