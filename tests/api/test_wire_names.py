"""Wire naming lives in the dialects: the graph's wire field names appear in no other module.

The service layer (``kaizenctl/api/models.py``) and everything above it speak of nodes at
``x``/``y`` and edges from ``source`` to ``target``; each dialect maps its own wire to that.
The reference server is a wire of its own (it serves the contract) and is left out.
"""

from __future__ import annotations

import re

from tests.paths import ROOT

PACKAGE = ROOT / "kaizenctl"
DIALECTS = {PACKAGE / "api" / "contract_v1.py", PACKAGE / "api" / "studio.py"}
WIRE_NAMES = re.compile(r"\b(position_x|position_y|source_node_id|target_node_id)\b")


def test_graph_wire_names_appear_only_in_the_dialect_modules() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path not in DIALECTS and "server" not in path.relative_to(PACKAGE).parts
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if WIRE_NAMES.search(line)
    ]
    assert found == []
    # The dialects do carry them (so the scan above is looking for the right names).
    assert all(WIRE_NAMES.search(path.read_text()) for path in DIALECTS)
