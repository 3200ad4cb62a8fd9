"""Latency remediation: bound pods whose latency limits broke are moved, safely.

A pod stays where it was bound, even when the network under it changes. On
the leader, and only when ``remediation.enabled`` is set, a pass every
``remediation.intervalSeconds`` looks at the bound pods of lasched's
profiles for two *triggers*:

* a hard limit to a place (``delay_<place>`` labels, ``lasched.io/max-rtt``)
  broken by fresh RTTs for longer than ``gracePeriodSeconds``;
* the pod's node NotReady or unreachable for longer than
  ``nodeNotReadySeconds``.

A pod with a trigger due is evicted through the Eviction API (so
PodDisruptionBudgets hold) only when every safety rule lets it go
(:mod:`lasched.remediation.rules`), it is out of its cool-down, the rate
limits have room, and the profile's filters find a node for a replacement
now (:mod:`lasched.remediation.placement`). Every eviction and every decision
not to evict gets one Event on the pod, with the figures behind it.

The judging is pure and reads an injectable clock
(:mod:`lasched.remediation.judge`); the I/O that evicts, records Events and
counts metrics is :mod:`lasched.remediation.runner`.
"""
