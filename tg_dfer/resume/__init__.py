"""Resumable and sharded runs of the per-clip stages (faces, embed): the journal of finished work,
shards and their merge, and the one runner both stages use.
"""

from __future__ import annotations



