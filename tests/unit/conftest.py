"""Unit-test settings shared by every module.

Hypothesis keeps no example database (nothing is written outside the run)
and has no per-example deadline: timings on a shared 2-core machine are too
noisy for one, and the parsers' time bounds are checked explicitly instead.
``HYPOTHESIS_PROFILE=thorough`` runs ten times as many examples.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("lasched", database=None, deadline=None, max_examples=200)
settings.register_profile("thorough", database=None, deadline=None, max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "lasched"))
