"""The bench's ``protocol-only`` variant (scripts/bench.py): Voltaro with its MeterValues
not stored, to measure the protocol side alone (issue 14).

Loaded by Python at start-up from PYTHONPATH in the servers of that variant only (the
variant also turns the frame log off). A MeterValues gets the same answer as when stored
(``{}``) and the handler publishes a summary from ``transaction_lifecycle.decide``
without a transaction row (the no-transaction branch of the decision), with no group
commit, thread hop or transaction. Every other message (boots, starts, statuses) is
stored as usual; the bench checks that no sample was. Never part of a deployment:
nothing here is imported by the product.
"""

from __future__ import annotations

import os
import sys
from typing import Any

if os.environ.get("VOLTARO_BENCH_PROTOCOL_ONLY") == "1":
    # The bench serves the checkout it runs in (``python -m voltaro`` from there, which
    # puts it first on sys.path only after start-up): import that one, not whichever
    # checkout is installed in the environment.
    sys.path.insert(0, os.getcwd())
    from voltaro.domain import transaction_lifecycle as _lc
    from voltaro.store import db as _db
    from voltaro.store import transactions as _transactions

    _write = _db.Database.write

    async def _not_stored(self: _db.Database, fn: Any, *args: Any) -> Any:
        if fn is _transactions.record_meter_values:
            _, effects = _lc.decide(_lc.Ledger(transactions={}), _lc.MeterValues(request=args[0]))
            return _lc.answer(effects)
        return await _write(self, fn, *args)

    _db.Database.write = _not_stored  # type: ignore[method-assign]
