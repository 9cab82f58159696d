"""A node paused with SIGSTOP past its lease (issue 18; scale-and-security A3, "zombie
node"): the live node's reaper releases its chargers, a charger that noticed moves to the
live node; after SIGCONT the zombie sends ZERO CALLs (not even one queued before the
pause, nor one sent to its own API while it was stopped), closes every socket it still
holds with 1012, its late writes carrying the old epoch (release, "offline" flag) change
nothing, and it joins again as a new incarnation that routes commands again. Meanwhile a
command for a charger it held is "offline" at once once the reaper released it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.support.cluster import Cluster
from tests.support.cluster_charger import Charger, Link, eventually, running

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]

LEASE = 3.0


@pytest.mark.asyncio
@pytest.mark.nodes(2)
@pytest.mark.node_settings(node_lease_seconds=LEASE, command_queue_timeout=30.0)
async def test_a_node_paused_past_its_lease_fences_itself_on_resume(cluster: Cluster) -> None:
    n2 = cluster[1]
    answer_later = asyncio.Event()

    async def slow_answer(action: str, payload: dict[str, Any]) -> dict[str, Any]:
        if action == "RemoteStartTransaction":
            await answer_later.wait()
        return {"status": "Accepted"}

    # A charger that notices nothing (no WebSocket pings: the kernel keeps a stopped
    # process's sockets open), and one that does and moves to n1.
    zombie_side = await Link.open(n2.url, "CP-Z", node=1, answer=slow_answer, ping_interval=None)
    assert await zombie_side.boot() == "Accepted"
    mover = Charger("CP-M", cluster.urls, start=1)
    async with running([mover]):
        assert await mover.wait_booted() == 1
        assert cluster.sql("SELECT node_id, epoch FROM charger_owners ORDER BY charger_id") == [
            ("n2", 1),
            ("n2", 1),
        ]
        (before,) = cluster.sql("SELECT incarnation FROM cluster_nodes WHERE node_id = 'n2'")

        # Two commands on n2 for its own charger: the first is sent and waits for the
        # charger's answer, the second waits for its turn (one CALL at a time).
        first = asyncio.create_task(
            asyncio.to_thread(
                n2.api,
                "POST",
                "/charge_points/CP-Z/commands/remote-start",
                {"id_tag": "T-SENT", "force": True},
            )
        )
        await eventually(
            lambda: zombie_side.log.of("RemoteStartTransaction"), within=5, what="first CALL"
        )
        second = asyncio.create_task(
            asyncio.to_thread(
                n2.api,
                "POST",
                "/charge_points/CP-Z/commands/remote-start",
                {"id_tag": "T-QUEUED", "force": True},
            )
        )
        await asyncio.sleep(0.5)  # the second is queued behind the first
        n2.pause()
        paused = time.monotonic()
        try:
            answer_later.set()  # the answer waits in n2's socket buffer
            # n1's reaper releases n2's chargers once n2's lease ran out (database clock).
            await eventually(
                lambda: (
                    not cluster.sql(
                        "SELECT 1 FROM charger_owners WHERE node_id = 'n2' AND charger_id = 'CP-Z'"
                    )
                ),
                within=LEASE + 10,
                what="CP-Z released by n1's reaper",
            )
            assert cluster.sql("SELECT connected FROM charge_points WHERE charger_id = 'CP-Z'") == [
                (False,)
            ]
            # CP-M saw its pings go unanswered and moved to n1 (a new claim there).
            assert await mover.wait_booted(since=paused, within=20) == 0  # ~5.4 s
            await eventually(
                lambda: (
                    cluster.sql("SELECT node_id FROM charger_owners WHERE charger_id = 'CP-M'")
                    == [("n1",)]
                ),
                within=5,
                what="CP-M owned by n1",
            )
            (m_epoch,) = cluster.sql("SELECT epoch FROM charger_owners WHERE charger_id = 'CP-M'")[
                0
            ]
            # Through the live node: nobody holds CP-Z now, so "offline" at once (409).
            began = time.monotonic()
            status, body = await asyncio.to_thread(
                cluster[0].api,
                "POST",
                "/charge_points/CP-Z/commands/remote-start",
                {"id_tag": "T-DURING", "force": True},
            )
            assert status == 409, body
            took = time.monotonic() - began
            assert took < 10.0, took  # ~0.02 s; waiting for an owner: the command's time
            # Sent to the zombie's own API while it is stopped: read only after SIGCONT,
            # when the node knows it lost its lease.
            late = asyncio.create_task(
                asyncio.to_thread(
                    n2.api,
                    "POST",
                    "/charge_points/CP-Z/commands/remote-start",
                    {"id_tag": "T-LATE", "force": True},
                    60.0,
                )
            )
            await asyncio.sleep(max(0.0, LEASE + 1.5 - (time.monotonic() - paused)))
        finally:
            n2.resume()
        resumed = time.monotonic()

        # On SIGCONT: CP-Z's socket closed with 1012 (service restart), at once.
        await asyncio.wait_for(zombie_side.closed.wait(), 10)
        assert zombie_side.close_code == 1012
        assert zombie_side.closed_at is not None
        assert zombie_side.closed_at - resumed < 5.0  # ~0.03 s
        # ZERO CALLs after the pause: the queued command was never sent.
        after = [c for c in zombie_side.log.calls if c.at >= paused]
        assert after == []
        assert [c.payload["idTag"] for c in zombie_side.log.of("RemoteStartTransaction")] == [
            "T-SENT"
        ]
        status, body = await asyncio.wait_for(second, 40)
        assert status != 200, body
        await asyncio.wait_for(first, 40)
        status, body = await asyncio.wait_for(late, 40)
        assert status in (409, 503), body  # refused, not sent

        # n2's late release and "offline" for CP-M carry epoch 1: n1's claim stands.
        await asyncio.sleep(2)
        assert cluster.sql(
            "SELECT node_id, epoch FROM charger_owners WHERE charger_id = 'CP-M'"
        ) == [("n1", m_epoch)]
        assert cluster.sql("SELECT connected FROM charge_points WHERE charger_id = 'CP-M'") == [
            (True,)
        ]
        assert mover.node == 0
        # n2 joined again as a new incarnation with a live lease.
        (after_row,) = await eventually(
            lambda: cluster.sql(
                "SELECT incarnation FROM cluster_nodes WHERE node_id = 'n2' "
                "AND lease_until > (now() AT TIME ZONE 'UTC') AND incarnation <> %s",
                before,
            ),
            within=5,
            what="n2 back with a new incarnation",
        )
        assert after_row[0] != before[0]
        # ... and routes commands again: to CP-M, which moved to n1.
        status, body = await asyncio.to_thread(
            n2.api,
            "POST",
            "/charge_points/CP-M/commands/remote-start",
            {"id_tag": "T-AFTER", "force": True},
            60.0,
        )
        assert status == 200, body
        assert len(mover.log.of("RemoteStartTransaction", idTag="T-AFTER")) == 1
        assert mover.log.duplicates() == {}
        assert zombie_side.log.of("RemoteStartTransaction", idTag="T-LATE") == []
    await zombie_side.close()
