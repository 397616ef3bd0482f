"""Errors panet raises for names it does not know."""

from __future__ import annotations


class UnknownNameError(KeyError, ValueError):
    """An unknown task, preset or baseline name: a ``ValueError`` (a bad argument) that is also the ``KeyError`` a
    lookup in a table raises. Its text is the message itself (a plain KeyError would print it in quotes)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
