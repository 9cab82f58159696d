"""A DataTable whose cell updates re-render only the row that changed.

Textual's DataTable keys every rendered cell on a table-wide update counter, so one
`update_cell` throws away every cached cell and the next frame renders all visible cells
again through Rich. At hundreds of meter values a second that was most of the console's
CPU (profile in docs/console.md). Here a cell's cache key carries its row's own version
instead, so a changed row re-renders its own cells and the others are reused.

Anything else that changes the table (rows added or cleared, a resize, column widths,
sorting) still bumps the table-wide counter without going through `set_cells`, and that
still invalidates every cell, as in Textual.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

from rich.text import Text
from textual.cache import LRUCache
from textual.geometry import Region
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowKey

CELL_CACHE_SIZE = 10000  # as Textual's own


class _RowVersionedCells:
    """Stands in for DataTable's cell cache: replaces the table-wide update counter in
    each key (index 6 of Textual's CellCacheKey) by "updates not made by set_cells"
    plus the row's own version."""

    def __init__(self, table: LiveTable) -> None:
        self._table = table
        self._cache: LRUCache[Hashable, Any] = LRUCache(CELL_CACHE_SIZE)

    def _key(self, key: tuple[Any, ...]) -> tuple[Any, ...]:
        table = self._table
        row_key = key[0]
        generation = table._update_count - table._cell_updates
        return (*key[:6], generation, table._row_versions.get(row_key, 0), *key[7:])

    def __contains__(self, key: tuple[Any, ...]) -> bool:
        return self._key(key) in self._cache

    def __getitem__(self, key: tuple[Any, ...]) -> Any:
        return self._cache[self._key(key)]

    def __setitem__(self, key: tuple[Any, ...], value: Any) -> None:
        self._cache[self._key(key)] = value

    def clear(self) -> None:
        self._cache.clear()


class LiveTable(DataTable[Any]):
    """Rows must be one line high (DataTable's default)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cell_updates = 0
        self._row_versions: dict[RowKey, int] = {}
        self._cell_render_cache = _RowVersionedCells(self)  # type: ignore[assignment]

    def set_cells(self, row_key: str, cells: Iterable[tuple[str, Text]]) -> None:
        """Replace some cells of one row and redraw that row only. A value wider than
        its column widens the column (DataTable.update_cell crops it unless asked:
        'SuspendedEV' arriving in a column sized for 'Available' read 'Suspended')."""
        key = RowKey(row_key)
        data = self._data[key]
        widened = False
        for column_key, value in cells:
            column = self.columns[ColumnKey(column_key)]
            data[column.key] = value
            if value.cell_len > column.content_width:
                column.content_width = value.cell_len
                widened = True
        self._row_versions[key] = self._row_versions.get(key, 0) + 1
        # The table-wide counter must move too (the row and line caches use it).
        self._update_count += 1
        if widened:
            # Every row's cells change width: not counted as ours, so all re-render.
            self._require_update_dimensions = True
            self.refresh()
            return
        # Counted as ours, so that other rows' cells stay cached.
        self._cell_updates += 1
        index = self._row_locations.get(key)
        if index is not None:
            # DataTable.refresh_row sums the heights of every row above (O(rows) per
            # call, most of the cost at 1,000 chargers); rows here are one line high.
            y = index + (self.header_height if self.show_header else 0)
            self._refresh_region(Region(0, y, max(self.size.width, self.virtual_size.width), 1))

    def rows_in_view(self) -> range:
        """Indexes of the rows on screen now (rows are one line high)."""
        top = int(self.scroll_y)
        height = self.scrollable_content_region.height
        if self.show_header:
            height -= self.header_height
        return range(top, min(self.row_count, top + max(0, height) + 1))

    def clear(self, columns: bool = False) -> LiveTable:
        super().clear(columns)
        self._row_versions.clear()
        return self
