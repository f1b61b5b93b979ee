"""A local stand-in for the Kaggle API, speaking the official client's protocol on 127.0.0.1.

Used by the tests and by ``make demo``; never contacts Kaggle.
"""

from kit.standin.server import StandinServer

__all__ = ["StandinServer"]
