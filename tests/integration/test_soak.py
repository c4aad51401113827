"""The soak's short version (deploy/benchmark/soak.py, docs/soak.md): every
fault injected once, on a service and a dockerd of its own, amid a minute of
churn (the faults take about that long one after another, so a longer soak
only adds churn after the last). Figures only: no timing is asserted."""

import os
import shutil

import pytest

from deploy.benchmark.soak import soak

FAULTS = 8


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("dockerd"), reason="the soak needs root and dockerd (a private engine, a tmpfs)")
def test_a_short_soak_loses_no_session_and_no_work_and_heals_after_every_fault():
    result = soak(minutes=1.0)
    print(result)
    assert result["sessions_lost"] == 0, result["lost"]
    assert result["work_lost"] == 0, result["work_lost_detail"]
    assert result["work_saved"] > 0 and not result["soak_errors"]
    assert len(result["faults"]) == FAULTS
    assert [fault["fault"] for fault in result["faults"] if not fault["healed"]] == []
    disk, busy = result["faults"][-2], result["faults"][-1]
    assert disk["warned"] and disk["ended"] == "disk-full"
    # TMPNB_CPU_QUOTA's default: one core, whatever the loops ask (they get
    # less when the machine's other work takes the cores).
    assert busy["cores_allowed"] == 1 and busy["cores_used"] < 1.2
