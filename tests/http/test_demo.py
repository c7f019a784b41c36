"""``serve --demo``: the service, the token and the curl commands it prints actually work."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.serverproc import ServerProcess


def test_the_printed_seed_call_works_with_the_printed_token(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, ["--demo"]).start()
    try:
        output = server.log()
        token = re.search(r"export TOKEN=(\S+)", output)
        seed_call = re.search(r"-X POST '(\S+/regenerateSecondaryKey\?\S+)'", output)
        assert token is not None and seed_call is not None, output
        assert output.index("regenerateSecondaryKey") < output.index("listSecrets")  # the seed call first
        response = httpx.post(seed_call[1], headers={"Authorization": f"Bearer {token[1]}"})
        assert response.status_code == 200
        assert response.json()["data"]["service_name"] == "demo-apim"
        # Started again on the same store, the demo is not provisioned twice.
        server.restart()
        services = httpx.get(seed_call[1].split("/demo-apim/")[0] + "?api-version=2024-05-01",
                             headers={"Authorization": f"Bearer {token[1]}"})
        assert [s["name"] for s in services.json()["data"]] == ["demo-apim"]
    finally:
        server.stop()
