"""``tenant-access master-key rotate | status | retire``: the master keyring's life cycle.

The rules that make a rotation safe to interrupt anywhere (``kill -9`` included):

* Every run first opens every stored value (each key version and the master key check value) with
  the keyring as it is, and changes nothing unless all of them open.
* A rotation is *unfinished* while its new key is pending (``master-keys/pending.key``, removed
  only after the final check) or any stored value is under a key other than the current one. A
  run then finishes that rotation, to that key; it never starts another key over a half-done one.
* No key file is ever deleted by a rotation. ``retire`` deletes one only after a fresh census shows
  no stored value under it.
* Success is reported only after a census shows every value under the new key.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator

from tenant_access.config import Settings
from tenant_access.runtime import RELOAD_INTERVAL, FileKeyring, open_store_for
from tenant_access.security.errors import MasterKeyError
from tenant_access.storage.base import Store
from tenant_access.storage.census import KeyCensus
from tenant_access.storage.sql import WrongMasterKey

#: Re-encryption passes before giving up: more than one is needed only when a server that had not
#: yet noticed the new key (it looks at most once a second) wrote a value under the old one.
MAX_PASSES = 5

Say = Callable[[str], None]


class AdminError(Exception):
    """A refusal, with what to do about it; the command exits with status 1."""


def _keyring(settings: Settings) -> FileKeyring:
    try:
        return FileKeyring(settings.data_dir, settings.master_key, settings.previous_master_key, create=False)
    except MasterKeyError as exc:
        raise AdminError(str(exc)) from None


async def _opened(settings: Settings, keyring: FileKeyring) -> Store:
    store = open_store_for(settings, keyring)
    try:
        await store.open()
    except WrongMasterKey:
        raise AdminError(f"the keyring (keys {', '.join(keyring.key_ids)}) does not open the store's check value: "
                         "a master key the store needs is missing; nothing was changed") from None
    return store


def _progress(note: Say, what: str) -> Callable[[int, int], None]:
    return lambda done, total: note(f"{what}: {done}/{total}")


def _unreadable(census: KeyCensus) -> str:
    return ", ".join(f"{n} under {key_id}" for key_id, n in sorted(census.unreadable.items()))


async def rotate(settings: Settings, *, resume_only: bool, say: Say, note: Say) -> None:
    """Finish the unfinished rotation, or (unless ``resume_only``) make a new key and move every
    stored value under it. ``say``: results (standard output); ``note``: progress (standard error)."""
    keyring = _keyring(settings)
    with _exclusive(keyring):
        await _rotate(settings, keyring, resume_only=resume_only, say=say, note=note)


@contextlib.contextmanager
def _exclusive(keyring: FileKeyring) -> Iterator[None]:
    """One rotate or retire at a time on a data directory (keys from the environment have no files)."""
    if keyring.from_environment:
        yield
        return
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(keyring.files.exclusive())
        except MasterKeyError as exc:
            raise AdminError(str(exc)) from None
        yield


async def _rotate(settings: Settings, keyring: FileKeyring, *, resume_only: bool, say: Say, note: Say) -> None:
    store = await _opened(settings, keyring)
    try:
        census = await store.census(_progress(note, "verifying stored values"))
        if census.unreadable:
            raise AdminError(f"{sum(census.unreadable.values())} stored value(s) do not open with the keyring "
                             f"({_unreadable(census)}); nothing was changed. Put the missing master key back "
                             "(master-keys/<id>.key, or TENANT_ACCESS_PREVIOUS_MASTER_KEY) and run this again")
        if not keyring.from_environment:
            for name in keyring.files.remove_leftovers():
                note(f"removed {name}, left by an interrupted write")
        pending = None if keyring.from_environment else keyring.files.pending()
        stale = census.under_other_keys(keyring.current_id)
        if pending is not None:
            say(f"resuming the interrupted rotation to master key {pending.id}")
            keyring.files.install_new(pending, note)
            _follow(keyring, pending.id)
        elif stale:
            say(f"resuming the unfinished rotation to master key {keyring.current_id}: {stale} stored value(s) "
                f"still under {', '.join(k for k in sorted(census.values) if k != keyring.current_id)}")
        elif resume_only:
            say(f"no unfinished rotation: every stored value is under master key {keyring.current_id}")
            return
        elif keyring.from_environment:
            say(f"every stored value is already under TENANT_ACCESS_MASTER_KEY ({keyring.current_id}); to rotate, "
                "put a new key there and this one in TENANT_ACCESS_PREVIOUS_MASTER_KEY, restart the servers, "
                "and run this again")
            return
        else:
            new = keyring.files.begin_new()
            note(f"new master key {new.id} written to {keyring.files.path / 'pending.key'}")
            keyring.files.install_new(new, note)
            _follow(keyring, new.id)
            say(f"new master key {new.id} (the previous keys stay in {keyring.files.path} for decryption)")
        current = keyring.current_id
        rewritten = 0
        for attempt in range(MAX_PASSES):
            if attempt:
                await asyncio.sleep(RELOAD_INTERVAL)
            rewritten += await store.reencrypt(_progress(note, "re-encrypting keys"))
            census = await store.census(_progress(note, "verifying stored values"))
            if census.complete(current):
                break
        else:
            raise AdminError(f"{census.under_other_keys(current)} stored value(s) are still under older keys "
                             f"after {MAX_PASSES} passes; run this again")
        if not keyring.from_environment:
            keyring.files.complete_new()
        note("rotation complete")
        say(f"re-encrypted {rewritten} stored key(s) under the current master key {current}")
        unused = [k for k in keyring.key_ids if k != current]
        say(f"rotation complete: all {census.total} stored value(s) are under master key {current}"
            + (f"; no longer used: {', '.join(unused)} (remove with `tenant-access master-key retire ID`)"
               if unused and not keyring.from_environment else ""))
    finally:
        await store.close()


def _follow(keyring: FileKeyring, key_id: str) -> None:
    """This process encrypts under the key just made current, or the rotation stops here."""
    keyring.reload()
    if keyring.current_id != key_id:
        raise AdminError(f"the keyring could not be re-read after making {key_id} current; run this again")


async def status(settings: Settings, *, say: Say, note: Say) -> bool:
    """Key ids, values each encrypts, the current one, whether a rotation is unfinished. Answers
    whether every stored value opens."""
    keyring = _keyring(settings)
    store = await _opened(settings, keyring)
    try:
        census = await store.census(_progress(note, "verifying stored values"))
    finally:
        await store.close()
    current = keyring.current_id
    where = ("TENANT_ACCESS_MASTER_KEY / TENANT_ACCESS_PREVIOUS_MASTER_KEY" if keyring.from_environment
             else str(keyring.files.path))
    say(f"master keys ({where}):")
    for key_id in sorted(set(keyring.key_ids) | set(census.values)):
        held = key_id in keyring.key_ids
        marks = ["current"] if key_id == current else []
        if not held:
            marks.append("MISSING from the keyring")
        elif key_id != current and not census.values[key_id]:
            marks.append("unused: can be retired")
        say(f"  {key_id}  {census.values[key_id]:>8} stored value(s)  {' '.join(marks)}".rstrip())
    pending = None if keyring.from_environment else keyring.files.pending()
    stale = census.under_other_keys(current)
    if pending is not None:
        say(f"rotation: unfinished (to new key {pending.id}); run `tenant-access master-key rotate`")
    elif stale:
        say(f"rotation: unfinished ({stale} stored value(s) under older keys); run `tenant-access master-key rotate`")
    else:
        say("rotation: none unfinished")
    if census.unreadable:
        say(f"UNREADABLE: {sum(census.unreadable.values())} stored value(s) ({_unreadable(census)})")
    return not census.unreadable


async def retire(settings: Settings, key_id: str, *, say: Say, note: Say) -> None:
    """Delete a master key file, only when a census (after every server has followed the keyring)
    shows no stored value under it."""
    keyring = _keyring(settings)
    with _exclusive(keyring):
        await _retire(settings, keyring, key_id, say=say, note=note)


async def _retire(settings: Settings, keyring: FileKeyring, key_id: str, *, say: Say, note: Say) -> None:
    key_id = key_id.strip().lower()
    if key_id == keyring.current_id:
        raise AdminError(f"master key {key_id} is the current one: rotate to a new key first")
    if key_id not in keyring.key_ids:
        raise AdminError(f"there is no master key {key_id} in the keyring (keys: {', '.join(keyring.key_ids)})")
    if not keyring.from_environment:
        # A server encrypts under the key the pointer named when it last looked (at most a second ago):
        # wait until every one of them has followed the latest change before counting.
        changed = (keyring.files.path / "current").stat().st_mtime
        wait = changed + 2 * RELOAD_INTERVAL - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
    store = await _opened(settings, keyring)
    try:
        census = await store.census(_progress(note, "verifying stored values"))
    finally:
        await store.close()
    if census.unreadable:
        raise AdminError(f"{sum(census.unreadable.values())} stored value(s) do not open "
                         f"({_unreadable(census)}): not retiring anything")
    using = census.values[key_id]
    if using:
        raise AdminError(f"{using} stored value(s) still use master key {key_id}: run `tenant-access master-key "
                         "rotate` to finish moving them, then retire it")
    if keyring.from_environment:
        say(f"no stored value uses master key {key_id}: remove it from TENANT_ACCESS_PREVIOUS_MASTER_KEY")
        return
    try:
        keyring.files.retire(key_id)
    except MasterKeyError as exc:
        raise AdminError(str(exc)) from None
    say(f"retired master key {key_id}: no stored value used it; {keyring.files.key_path(key_id)} is deleted")
