"""The reference Kaizen Studio server behind ``kaizenctl serve``.

It implements CONTRACT.md on FastAPI with its state in SQLite, plus fault and
realism knobs (latency, 429/503, lost answers, short pages, slow deployments)
so kaizenctl can be tested against the misbehaviour a real server shows.
"""
