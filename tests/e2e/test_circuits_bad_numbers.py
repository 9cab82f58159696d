"""`voltaro ctl circuits` refuses limits that are not finite numbers, and the stored tree
stays usable (issue 17; see tests/unit/test_circuit_limits.py for the rule)."""

from __future__ import annotations

import json

from tests.e2e.conftest import RunningServer
from tests.e2e.test_ctl import ctl
from voltaro.store import chargers


async def test_nan_or_infinite_limits_are_refused_and_the_tree_stays_usable(
    server: RunningServer,
) -> None:
    for value in ("nan", "inf"):
        refused = await ctl(server, "circuits", "add", "site", "--limit", value)
        assert refused.returncode == 2, refused.stdout
        assert b"finite" in refused.stderr
    listed = json.loads((await ctl(server, "--json", "circuits", "list")).stdout)
    assert listed["circuits"] == []
    assert (await ctl(server, "circuits", "add", "site", "--limit", "63")).returncode == 0
    server.run(chargers.add_charger, "CP-1")
    bad_rating = await ctl(server, "circuits", "assign", "CP-1", "site", "--max", "nan")
    assert bad_rating.returncode == 2
    assert b"finite" in bad_rating.stderr
    feeder = await ctl(server, "circuits", "add", "f1", "--parent", "site", "--kw", "22")
    assert feeder.returncode == 0, feeder.stderr  # the tree still takes changes
