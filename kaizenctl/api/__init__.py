"""The API service layer: every URL and wire shape of Kaizen Studio lives under this package."""

import sys

# httpx imports its own command line (httpx._main) whenever click, pygments and rich are
# all installed: about 75 ms of start-up for every kaizenctl command, for a CLI it never
# uses. With the entry None that optional import fails at once, as it does where they are
# missing, and httpx.main becomes its "not installed" stub. Only if httpx is not loaded yet.
if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
