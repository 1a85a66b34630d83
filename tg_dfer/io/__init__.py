"""The files passed between stages (docs/contracts.md), one module per file kind, and the one
atomic-write mechanism they share. Importing this package loads none of them.
"""

from __future__ import annotations



