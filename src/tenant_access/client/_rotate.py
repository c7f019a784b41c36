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
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

from tenant_access.client._client import AsyncClient, Client
from tenant_access.client._models import AccessRef, KeySlot, NewKey, RotationResult, Secrets, other_slot


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


def rotate(
    client: Client, target: AccessRef, *, on_new_key: Callable[[NewKey], object], in_use: KeySlot = "primary",
) -> RotationResult:
    """Rotate both keys of ``target`` without cutting off clients that use the ``in_use`` key.

    ``on_new_key`` receives the new standby key (the value ``listSecrets`` returned) and must
    return only once every client uses it. Returns which key is now in use and both new version
    ids (``None`` against an Azure-style server).
    """
    in_use = _check(in_use)
    standby = other_slot(in_use)
    first = client.regenerate_key(target, standby)
    new = _new_key(target, standby, client.list_secrets(target), first.id)
    try:
        on_new_key(new)
    except BaseException as exc:
        _note(exc, new, in_use)
        raise
    second = client.regenerate_key(target, in_use)
    return RotationResult(target=target, in_use=standby, in_use_version_id=new.version_id,
                          standby_version_id=second.id)


async def rotate_async(
    client: AsyncClient, target: AccessRef, *, on_new_key: Callable[[NewKey], Awaitable[object] | object],
    in_use: KeySlot = "primary",
) -> RotationResult:
    """:func:`rotate` for :class:`AsyncClient`; ``on_new_key`` may be sync or async."""
    in_use = _check(in_use)
    standby = other_slot(in_use)
    first = await client.regenerate_key(target, standby)
    new = _new_key(target, standby, await client.list_secrets(target), first.id)
    try:
        result = on_new_key(new)
        if inspect.isawaitable(result):
            await result
    except BaseException as exc:
        _note(exc, new, in_use)
        raise
    second = await client.regenerate_key(target, in_use)
    return RotationResult(target=target, in_use=standby, in_use_version_id=new.version_id,
                          standby_version_id=second.id)
