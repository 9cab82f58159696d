"""Node leases, self-fencing, the reaper and per-node connected flags (issue 18), against
the real PostgreSQL: several ClusterNode instances on one throwaway database."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from sqlalchemy import text

from tests.support.outage import database_outage
from voltaro.net.registry import Registry, Session
from voltaro.service.cluster_node import ClusterNode
from voltaro.service.hub import RESYNC, EventHub
from voltaro.store import charger_owners, chargers
from voltaro.store.db import Database

pytestmark = pytest.mark.postgres

LEASE = 1.5


def _sql(db: Database, statement: str, **params: Any) -> list[Any]:
    def work(s: Any) -> list[Any]:
        result = s.execute(text(statement), params)
        return list(result.all()) if result.returns_rows else []

    return db.run_sync(work)


class _Link:
    """What the fence touches of a session's link: nothing but its identity."""

    charger_id = "x"


def _session(registry: Registry, charger_id: str, epoch: int = 1) -> Session:
    session = Session(charger_id=charger_id, link=_Link(), epoch=epoch)  # type: ignore[arg-type]
    registry.claim(session)
    return session


async def _until(check: Any, within: float) -> None:
    with trio.fail_after(within):
        while not check():  # noqa: ASYNC110 - polling a node's state and the clock
            await trio.sleep(0.02)


def _hub() -> tuple[EventHub, list[tuple[str, dict[str, Any]]]]:
    hub = EventHub(100)
    seen: list[tuple[str, dict[str, Any]]] = []
    hub.tap = lambda name, data: seen.append((name, data))
    return hub, seen


def _node(db: Database, node_id: str, registry: Registry | None = None, **kw: Any) -> ClusterNode:
    return ClusterNode(
        db,
        registry if registry is not None else Registry(),
        kw.pop("hub", None),
        node_id=node_id,
        lease_seconds=kw.pop("lease", LEASE),
        **kw,
    )


async def test_the_lease_is_renewed_on_the_database_clock_and_ended_on_stop(
    pg: Database,
) -> None:
    node = _node(pg, "n1", address="10.0.0.1:9000")
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        assert not node.fenced()
        (first,) = _sql(
            pg,
            "SELECT incarnation, address, lease_until, "
            "EXTRACT(EPOCH FROM lease_until - (now() AT TIME ZONE 'UTC')) AS left_s "
            "FROM cluster_nodes WHERE node_id = 'n1'",
        )
        assert first.incarnation == node.incarnation
        assert first.address == "10.0.0.1:9000"
        assert 0 < first.left_s <= LEASE
        await trio.sleep(LEASE)  # three renewals
        (later,) = _sql(pg, "SELECT lease_until FROM cluster_nodes WHERE node_id = 'n1'")
        assert later.lease_until > first.lease_until
        assert not node.fenced()
        assert 0 < node.lease_left() <= LEASE
        views = await node.nodes()
        assert [(v.node_id, v.live) for v in views] == [("n1", True)]
        nursery.cancel_scope.cancel()
    # A clean stop ends the lease now: the others need not wait for it to run out.
    (row,) = _sql(
        pg,
        "SELECT lease_until <= (now() AT TIME ZONE 'UTC') AS over "
        "FROM cluster_nodes WHERE node_id = 'n1'",
    )
    assert row.over


async def test_late_renewals_fence_the_node_its_sockets_close_1012_then_it_rejoins(
    pg: Database,
) -> None:
    registry = Registry()
    hub, seen = _hub()
    # A lease of 6 s, fenced within it (its local deadline), far from twice the lease or
    # the late renewal (2 + 12 s), with seconds of slack for a loaded machine.
    lease = 6.0
    node = _node(pg, "n1", registry, hub=hub, lease=lease)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        first = node.incarnation
        session = _session(registry, "CP-1")
        node.renew_delay = 2 * lease  # every renewal now arrives after the lease ran out
        started = trio.current_time()
        await _until(lambda: node.fences, lease + 5)
        # Fenced by the local clock no later than the lease (renewal start + lease).
        took = trio.current_time() - started
        assert took <= lease + 3, took
        assert session.scope.cancel_called
        assert session.close_code == 1012
        assert node.fences == 1
        node.renew_delay = 0
        await _until(lambda: not node.fenced(), 5)
        assert node.incarnation != first
        assert node.incarnations == 2
        nursery.cancel_scope.cancel()
    assert "cluster.node_fenced" in [name for name, _ in seen]


async def test_a_database_outage_fences_the_node_within_its_lease(
    pg: Database, postgres_url: str
) -> None:
    pg.run_sync(chargers.add_charger, "CP-1")
    registry = Registry()
    lease = 6.0  # fenced 4-6 s into the outage: far from twice the lease, seconds of slack
    node = _node(pg, "n1", registry, lease=lease)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        # Claimed, so a reaper round before the outage bites leaves it alone (a session
        # with no row of its own is closed with 1000 by the round: a flake under load).
        claimed = await node.claim("CP-1", "")
        session = _session(registry, "CP-1", claimed.epoch)
        with database_outage(postgres_url):
            started = trio.current_time()
            await _until(lambda: node.fenced(), lease + 5)
            took = trio.current_time() - started
            assert took <= lease + 3, took
            assert session.close_code == 1012
            await trio.sleep(lease / 2)
            assert node.fenced()  # no database, no lease
        await _until(lambda: not node.fenced(), 10)
        nursery.cancel_scope.cancel()


async def test_an_expired_lease_is_never_revived(pg: Database) -> None:
    node = _node(pg, "n1", lease=30)
    await node.register()
    assert await node.renew()
    _sql(
        pg,
        "UPDATE cluster_nodes SET lease_until = (now() AT TIME ZONE 'UTC') - interval '1 second'",
    )
    assert not await node.renew()
    assert node.fenced()


def _owned(db: Database) -> dict[str, tuple[str, int]]:
    return {
        r.charger_id: (r.node_id, r.epoch)
        for r in _sql(db, "SELECT charger_id, node_id, epoch FROM charger_owners")
    }


def _flags(db: Database) -> dict[str, bool]:
    return {
        r.charger_id: r.connected
        for r in _sql(db, "SELECT charger_id, connected FROM charge_points")
    }


async def test_a_node_starting_clears_only_its_own_chargers(pg: Database) -> None:
    for cid in ("CP-A", "CP-B"):
        pg.run_sync(chargers.add_charger, cid)
    old_a, b = _node(pg, "a", lease=30), _node(pg, "b", lease=30)
    await old_a.register()
    await b.register()
    await old_a.claim("CP-A", "1.2.3.4:5")
    await b.claim("CP-B", "1.2.3.4:6")
    pg.run_sync(charger_owners.set_connected_fenced, {"CP-A": True, "CP-B": True}, "a")
    # Node a crashes and starts again: a new incarnation with the same node id.
    new_a = _node(pg, "a", lease=30)
    await new_a.register()
    assert _owned(pg) == {"CP-B": ("b", 1)}
    assert _flags(pg) == {"CP-A": False, "CP-B": True}


async def test_claims_bump_the_epoch_and_a_late_release_changes_nothing(pg: Database) -> None:
    pg.run_sync(chargers.add_charger, "CP-1")
    a, b = _node(pg, "a", lease=30), _node(pg, "b", lease=30)
    await a.register()
    await b.register()
    on_a = await a.claim("CP-1", "1.1.1.1:1")
    on_b = await b.claim("CP-1", "1.1.1.1:2")
    assert (on_a.epoch, on_b.epoch) == (1, 2)
    assert _owned(pg) == {"CP-1": ("b", 2)}
    pg.run_sync(charger_owners.set_connected_fenced, {"CP-1": True}, "b")
    # a's socket closes late: neither its release nor its "offline" touch b's claim.
    await a.release("CP-1", on_a)
    pg.run_sync(charger_owners.set_connected_fenced, {"CP-1": False}, "a")
    assert _owned(pg) == {"CP-1": ("b", 2)}
    assert _flags(pg) == {"CP-1": True}
    assert not pg.run_sync(charger_owners.owns, "CP-1", "a", 1)
    await b.release("CP-1", on_b)
    pg.run_sync(charger_owners.set_connected_fenced, {"CP-1": False}, "b")
    assert _owned(pg) == {}
    assert _flags(pg) == {"CP-1": False}


async def test_an_eviction_notice_is_kept_for_a_socket_registered_after_it(
    pg: Database,
) -> None:
    # The listener claims before the WebSocket handshake is over and registers the socket
    # after it: an eviction notice in between finds no socket, and is remembered.
    pg.run_sync(chargers.add_charger, "CP-1")
    a, b = _node(pg, "a", lease=30), _node(pg, "b", lease=30)
    await a.register()
    await b.register()
    # A notice older than the claim is about an earlier connection of the charger:
    # epochs restart at 1 once its row is gone, so its higher epoch means nothing.
    assert not a.evict("CP-1", 7, "b")
    mine = await a.claim("CP-1", "1.1.1.1:1")
    assert mine.epoch == 1
    assert a.superseded("CP-1", mine) is None
    # A notice for a claim made after ours: ours is superseded when it registers.
    theirs = await b.claim("CP-1", "1.1.1.1:2")
    assert not a.evict("CP-1", theirs.epoch, "b")  # nothing registered to close yet
    assert a.superseded("CP-1", mine) == "b"
    assert a.status().evicted == 1
    # Never a socket of a newer claim of ours.
    again = await a.claim("CP-1", "1.1.1.1:3")
    assert a.superseded("CP-1", again) is None


async def test_a_late_release_of_an_earlier_incarnation_keeps_the_new_claim(
    pg: Database,
) -> None:
    # A fenced node joins again (new incarnation: its old rows are gone) and the charger
    # reconnects to it: epochs restart at 1. The old socket's late close carries epoch 1
    # too, but of the earlier incarnation: it must not release the new connection's row.
    pg.run_sync(chargers.add_charger, "CP-1")
    a = _node(pg, "a", lease=30)
    await a.register()
    old = await a.claim("CP-1", "1.1.1.1:1")
    await a.register()  # joined again: the earlier incarnation's rows are released
    new = await a.claim("CP-1", "1.1.1.1:2")
    assert (old.epoch, new.epoch) == (1, 1)
    assert old.incarnation != new.incarnation
    await a.release("CP-1", old)
    assert _owned(pg) == {"CP-1": ("a", 1)}
    assert pg.run_sync(charger_owners.owns, "CP-1", "a", 1)
    await a.release("CP-1", new)
    assert _owned(pg) == {}


async def test_reconcile_leaves_the_chargers_of_other_nodes_alone(pg: Database) -> None:
    for cid in ("CP-A", "CP-B", "CP-STALE"):
        pg.run_sync(chargers.add_charger, cid)
    a, b = _node(pg, "a", lease=30), _node(pg, "b", lease=30)
    await a.register()
    await b.register()
    await a.claim("CP-A", "")
    await b.claim("CP-B", "")
    pg.run_sync(
        charger_owners.set_connected_fenced, {"CP-A": True, "CP-B": True, "CP-STALE": True}, "a"
    )
    cleared, set_ = pg.run_sync(charger_owners.reconcile_connected_fenced, {"CP-A"}, "a")
    assert (cleared, set_) == (1, 0)
    assert _flags(pg) == {"CP-A": True, "CP-B": True, "CP-STALE": False}


async def test_consoles_resync_when_another_node_dies(pg: Database) -> None:
    # A node killed -9 takes its last unwritten outbox batch with it: the consoles of
    # the other nodes must be told (resync: re-read the state), never a silent gap.
    hub = EventHub(100)
    a, dead = _node(pg, "a", lease=30, hub=hub), _node(pg, "dead", lease=30)
    await a.register()
    await dead.register()
    async with hub.subscribe(remote=True) as console, hub.subscribe() as service:
        await a.reap_once()
        hub.publish("probe", {})  # nothing queued before it: no resync yet
        with trio.fail_after(5):  # already queued: at once
            assert getattr(await console.receive(), "name", None) == "probe"
            assert getattr(await service.receive(), "name", None) == "probe"
        _sql(
            pg,
            "UPDATE cluster_nodes SET lease_until = lease_until - interval '1 hour' "
            "WHERE node_id = 'dead'",
        )
        await a.reap_once()
        await a.reap_once()  # once per death
        hub.publish("probe", {})
        with trio.fail_after(5):  # already queued: at once
            assert await console.receive() == RESYNC
            assert getattr(await console.receive(), "name", None) == "probe"
            assert getattr(await service.receive(), "name", None) == "probe"
        # ... and when it comes back as a new incarnation and dies again.
        await dead.register()
        await a.reap_once()
        await dead.register()  # restarted before its old lease ran out: died too
        await a.reap_once()
        hub.publish("probe", {})
        with trio.fail_after(5):  # already queued: at once
            assert await console.receive() == RESYNC
            assert getattr(await console.receive(), "name", None) == "probe"


async def test_the_reaper_releases_the_chargers_of_an_expired_node(pg: Database) -> None:
    for cid in ("CP-A", "CP-DEAD"):
        pg.run_sync(chargers.add_charger, cid)
    hub, seen = _hub()
    a, dead = _node(pg, "a", lease=30, hub=hub), _node(pg, "dead", lease=30)
    await a.register()
    await dead.register()
    await a.claim("CP-A", "")
    await dead.claim("CP-DEAD", "")
    pg.run_sync(charger_owners.set_connected_fenced, {"CP-A": True}, "a")
    pg.run_sync(charger_owners.set_connected_fenced, {"CP-DEAD": True}, "dead")
    assert await a.reap_once() == 0
    _sql(
        pg,
        "UPDATE cluster_nodes SET lease_until = (now() AT TIME ZONE 'UTC') "
        "- interval '1 second' WHERE node_id = 'dead'",
    )
    assert await a.reap_once() == 1
    assert await _node(pg, "b", lease=30).reap_once() == 0  # once, whoever is first
    assert _owned(pg) == {"CP-A": ("a", 1)}
    assert _flags(pg) == {"CP-A": True, "CP-DEAD": False}
    views = {v.node_id: v for v in await a.nodes()}
    assert views["dead"].live is False
    assert views["dead"].chargers == 0
    assert views["a"].live is True
    assert views["a"].chargers == 1
    assert seen == [
        ("charger.disconnected", {"charger_id": "CP-DEAD", "reason": "node dead lost its lease"})
    ]


async def test_a_renewal_that_finds_the_lease_gone_rejoins_without_waiting_out_the_lease(
    pg: Database,
) -> None:
    node = _node(pg, "n1", lease=30)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        first = node.incarnation
        _sql(
            pg,
            "UPDATE cluster_nodes SET lease_until = (now() AT TIME ZONE 'UTC') "
            "- interval '1 second'",
        )
        assert not await node.renew()
        assert node.fenced()
        # Its local deadline is still ~30 s away: the lost lease itself wakes the rejoin
        # (after ~1 s).
        await _until(lambda: not node.fenced(), 10)
        assert node.incarnation != first
        nursery.cancel_scope.cancel()


async def test_a_slow_start_after_the_registration_does_not_cost_the_lease(
    pg: Database,
) -> None:
    """The app registers early (start-up errors are said at start) and starts the node's
    loops later; the first renewal is due a third of the lease after the registration,
    not a third of the lease after the loops start."""
    # A 6 s lease: the renewal due at once when the loops start has 1.5 s to get through
    # on a loaded machine (0.3 s with LEASE); one due 2 s after they start comes after
    # the lease ran out (at 6.5 s).
    lease = 6.0
    node = _node(pg, "n1", lease=lease)
    await node.register()
    await trio.sleep(lease * 0.75)  # the rest of a slow start-up
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        await trio.sleep(lease)
        assert node.fences == 0
        assert not node.fenced()
        nursery.cancel_scope.cancel()
