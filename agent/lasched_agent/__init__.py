"""lasched's node agent: measures RTTs from its node and streams them to lasched.

The wire format is :mod:`lasched_protocol`. This distribution is separate from
the scheduler because it alone depends on aioping (GPL-2.0).

Modules, from pure to I/O: :mod:`~lasched_agent.stats` (one interval's
statistics), :mod:`~lasched_agent.buffer` (latest sample per target while
disconnected), :mod:`~lasched_agent.backoff` (reconnect delays),
:mod:`~lasched_agent.config` (flags and environment), :mod:`~lasched_agent.icmp`
and :mod:`~lasched_agent.tcp` (one probe each), :mod:`~lasched_agent.methods`
(which probe, chosen at start-up), :mod:`~lasched_agent.prober` (rounds:
rotation, spreading, concurrency bound), :mod:`~lasched_agent.stream` (the
WebSocket client, :class:`~lasched_agent.stream.AgentClient`) and
:mod:`~lasched_agent.fanout` (one client per scheduler replica, one prober).
"""

__version__ = "0.1.0"
