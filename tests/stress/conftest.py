from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

#: the default CI run uses the short profile; `nox -s stress` sets BRIDGES_STRESS=1.
#: Each run draws its own seed (printed in the header; see tests/conftest.py).
for profile, examples in [("short", 12), ("stress", 300)]:
    settings.register_profile(
        profile,
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        print_blob=True,
    )
settings.load_profile("stress" if os.environ.get("BRIDGES_STRESS") else "short")

STRESS = bool(os.environ.get("BRIDGES_STRESS"))
