"""lasched's node agent: measures RTTs from its node and streams them to lasched.

The wire format is :mod:`lasched_protocol`. This distribution is separate from
the scheduler because it alone depends on aioping (GPL-2.0).
"""

__version__ = "0.1.0"
