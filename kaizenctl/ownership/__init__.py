"""Manifest sets: which set owns which live resource, and one apply at a time per set.

``inventory``: the ownership record of each set (an ApplySet-like inventory kept
on the server) and the ownership view a plan is built from. ``lock``: the set
lock (a lease on the server) that apply holds from its plan to its last write.
docs/ownership.md is the design.
"""
