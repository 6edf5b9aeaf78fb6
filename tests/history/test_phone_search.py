"""A number is found in any notation intake accepts it in, a PBX's bare digits included."""

from __future__ import annotations

import pytest
from httpx import AsyncClient

from tests.history.conftest import make_event


@pytest.mark.parametrize("notation", ["493023125741", "+49 30 23125741", "0049 30 23125741"])
async def test_a_caller_intake_stored_is_found_by_the_number_it_arrived_as(
    client: AsyncClient, writer: dict[str, str], reader: dict[str, str], notation: str
) -> None:
    # Intake read the CTI system's `from: 493023125741` (README) as +49 30 23125741.
    stored = await client.post(
        "/v1/events", json=make_event(customer={"phone": "+493023125741"}), headers=writer
    )
    assert stored.status_code == 201, stored.text

    found = await client.get("/v1/customers", params={"phone": notation}, headers=reader)

    assert found.status_code == 200, found.text
    [customer] = found.json()["items"]
    assert customer["id"] == stored.json()["customer_id"]
