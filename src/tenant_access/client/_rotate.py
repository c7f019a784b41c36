"""Zero-downtime rotation of one access configuration's keys.

Both keys are valid at all times, so rotation never needs a window: regenerate the key nobody
uses, move everybody onto it, then regenerate the key they left. The order is the whole point:
the key in use is regenerated only after ``on_new_key`` has returned, i.e. after the caller says
nobody depends on it any more.

Failure behaviour, step by step (nothing is retried; every step is safe to redo by hand):

1. regenerating the standby key fails → nothing changed.
2. ``listSecrets`` fails → the standby key is new, nobody has it, the key in use is untouched;
   running :func:`rotate` again with the same ``in_use`` is safe.
3. ``on_new_key`` raises → the exception propagates (with a note saying where rotation stopped);
   the key in use is *not* regenerated, so no client is cut off, whichever key it holds. If some
   clients did move to the new key, finish moving them and call ``regenerate_key(target,
   in_use)`` yourself, or run :func:`rotate` again with ``in_use`` set to the *new* key's slot.
   Do not re-run with the old ``in_use``: that would regenerate the key they just moved to.
4. the final regeneration fails → everybody is on the new key; the old key is still valid
   (unrotated); regenerate it when the server is back.

Concurrent rotations of the same configuration are not coordinated; run one rotator per
configuration.

With ``unused_for`` (an ISO 8601 duration such as ``"PT15M"``), every regeneration asks the server
to refuse it while the key was used within that window (``?ifUnusedFor=``): the standby key must
already be unused (else :class:`Conflict` at step 1, nothing changed), and after ``on_new_key`` the
old key is regenerated only once the server has seen no use of it for that long. Rotation polls
(every ``poll`` seconds, telling ``on_waiting`` the usage it saw) for at most ``wait`` seconds, then
raises the last :class:`Conflict`, with both keys still valid.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

from tenant_access.client._client import AsyncClient, Client
from tenant_access.client._errors import Conflict
from tenant_access.client._models import (
    AccessRef,
    KeySlot,
    KeyUsage,
    KeyVersion,
    NewKey,
    RotationResult,
    Secrets,
    other_slot,
)

#: How often rotation asks again whether the old key is unused (seconds).
POLL_SECONDS = 5.0


def _check(in_use: str) -> KeySlot:
    if in_use not in ("primary", "secondary"):
        raise ValueError(f"in_use must be 'primary' or 'secondary', not {in_use!r}")
    return "primary" if in_use == "primary" else "secondary"


def _new_key(target: AccessRef, slot: KeySlot, secrets: Secrets, regenerated_id: str | None) -> NewKey:
    return NewKey(
        target=target, slot=slot, key=secrets.key(slot),
        version_id=secrets.version_id(slot) or regenerated_id, principal_id=secrets.principal_id,
    )


def _note(exc: BaseException, new: NewKey, in_use: KeySlot) -> None:
    exc.add_note(
        f"rotate() stopped after on_new_key raised: the {new.slot} key of {new.target.service_name}/"
        f"{new.target.access_name} was regenerated (version {new.version_id}); the {in_use} key was NOT "
        "regenerated, so both keys are still valid (see tenant_access.client._rotate for how to resume)"
    )


def _final_regeneration(client: Client, target: AccessRef, in_use: KeySlot, unused_for: str | None, wait: float,
                        poll: float, on_waiting: Callable[[KeyUsage], object] | None) -> KeyVersion:
    if unused_for is None:
        return client.regenerate_key(target, in_use)
    deadline = time.monotonic() + wait
    while True:
        try:
            return client.regenerate_key(target, in_use, if_unused_for=unused_for)
        except Conflict:
            if time.monotonic() + poll > deadline:
                raise
            if on_waiting is not None:
                on_waiting(client.key_usage(target))
            time.sleep(poll)


def rotate(
    client: Client, target: AccessRef, *, on_new_key: Callable[[NewKey], object], in_use: KeySlot = "primary",
    unused_for: str | None = None, wait: float = 0.0, poll: float = POLL_SECONDS,
    on_waiting: Callable[[KeyUsage], object] | None = None,
) -> RotationResult:
    """Rotate both keys of ``target`` without cutting off clients that use the ``in_use`` key.

    ``on_new_key`` receives the new standby key (the value ``listSecrets`` returned) and must
    return only once every client uses it. Returns which key is now in use and both new version
    ids (``None`` against an Azure-style server).
    """
    in_use = _check(in_use)
    standby = other_slot(in_use)
    first = client.regenerate_key(target, standby, if_unused_for=unused_for)
    new = _new_key(target, standby, client.list_secrets(target), first.id)
    try:
        on_new_key(new)
    except BaseException as exc:
        _note(exc, new, in_use)
        raise
    second = _final_regeneration(client, target, in_use, unused_for, wait, poll, on_waiting)
    return RotationResult(target=target, in_use=standby, in_use_version_id=new.version_id,
                          standby_version_id=second.id)


async def rotate_async(
    client: AsyncClient, target: AccessRef, *, on_new_key: Callable[[NewKey], Awaitable[object] | object],
    in_use: KeySlot = "primary", unused_for: str | None = None, wait: float = 0.0, poll: float = POLL_SECONDS,
) -> RotationResult:
    """:func:`rotate` for :class:`AsyncClient`; ``on_new_key`` may be sync or async."""
    in_use = _check(in_use)
    standby = other_slot(in_use)
    first = await client.regenerate_key(target, standby, if_unused_for=unused_for)
    new = _new_key(target, standby, await client.list_secrets(target), first.id)
    try:
        result = on_new_key(new)
        if inspect.isawaitable(result):
            await result
    except BaseException as exc:
        _note(exc, new, in_use)
        raise
    deadline = time.monotonic() + wait
    while True:
        try:
            second = await client.regenerate_key(target, in_use, if_unused_for=unused_for)
            break
        except Conflict:
            if unused_for is None or time.monotonic() + poll > deadline:
                raise
            await asyncio.sleep(poll)
    return RotationResult(target=target, in_use=standby, in_use_version_id=new.version_id,
                          standby_version_id=second.id)
