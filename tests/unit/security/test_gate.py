"""The bound on concurrent expensive verifications: one at a time per address, a few overall."""

from __future__ import annotations

import asyncio

import pytest

from tenant_access.security.gate import VerificationGate


def test_one_address_waits_its_turn_and_others_go_first() -> None:
    async def scenario() -> list[str]:
        gate = VerificationGate(total=2, per_address=1)
        order: list[str] = []
        release = asyncio.Event()

        async def verify(address: str, name: str) -> None:
            async with gate.slot(address):
                order.append(f"start {name}")
                await release.wait()
                order.append(f"end {name}")

        burst = [asyncio.create_task(verify("10.0.0.1", f"burst{i}")) for i in range(5)]
        await asyncio.sleep(0)
        other = asyncio.create_task(verify("10.0.0.2", "other"))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        # The burst holds one slot; the other address got the second at once.
        assert order == ["start burst0", "start other"]
        assert gate.waiting("10.0.0.1") == 5
        release.set()
        await asyncio.gather(*burst, other)
        assert gate.waiting("10.0.0.1") == 0
        assert gate._addresses == {}  # nothing is kept for addresses no longer in flight
        return order

    order = asyncio.run(scenario())
    assert [e for e in order if e.startswith("start burst")] == [f"start burst{i}" for i in range(5)]


def test_a_failed_verification_frees_its_slot() -> None:
    async def scenario() -> None:
        gate = VerificationGate(total=1)
        with pytest.raises(RuntimeError):
            async with gate.slot("a"):
                raise RuntimeError("scrypt failed")
        async with gate.slot("a"):
            pass
        assert gate.waiting("a") == 0

    asyncio.run(scenario())


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        VerificationGate(total=0)
    with pytest.raises(ValueError, match="must be positive"):
        VerificationGate(per_address=0)
