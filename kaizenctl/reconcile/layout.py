"""A layered layout for new nodes that have no position, so that a graph made
by kaizenctl reads well in the platform's editor: each node one column right of
its furthest predecessor (cycles broken by visiting order), rows within a column.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

COLUMN_WIDTH = 280.0
ROW_HEIGHT = 140.0


def layered_positions(
    node_ids: list[str], edges: Iterable[tuple[str, str]]
) -> dict[str, tuple[float, float]]:
    """Positions for every node in ``node_ids`` (in their given order)."""
    successors: dict[str, list[str]] = {node: [] for node in node_ids}
    predecessors: dict[str, list[str]] = {node: [] for node in node_ids}
    indegree: dict[str, int] = dict.fromkeys(node_ids, 0)
    for source, target in edges:
        if source in successors and target in indegree and source != target:
            successors[source].append(target)
            predecessors[target].append(source)
            indegree[target] += 1

    layer: dict[str, int] = {}
    remaining = dict(indegree)
    queue = deque(node for node in node_ids if indegree[node] == 0)
    while len(layer) < len(node_ids):
        if not queue:
            # A cycle with no entry: start it at the first node not yet placed.
            start = next(node for node in node_ids if node not in layer)
            layer.setdefault(start, 0)
            queue.append(start)
        node = queue.popleft()
        layer.setdefault(node, 0)
        for successor in successors[node]:
            if successor in layer:
                continue  # a back edge of a cycle
            remaining[successor] -= 1
            if remaining[successor] <= 0:
                layer[successor] = max(
                    (layer[p] + 1 for p in predecessors[successor] if p in layer),
                    default=0,
                )
                queue.append(successor)

    rows: dict[int, int] = {}
    positions: dict[str, tuple[float, float]] = {}
    for node in node_ids:
        column = layer[node]
        row = rows.get(column, 0)
        rows[column] = row + 1
        positions[node] = (column * COLUMN_WIDTH, row * ROW_HEIGHT)
    return positions
