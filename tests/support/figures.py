"""The answer-quality figures issue 17 gives for its six recorded cases, shared by the
tests that replay them on every platform: answered at 25 s, answered at 75 s, caller
hangs up at 40 s while ringing, at 8 s (a short abandon, QRAARM), busy, no answer."""

from __future__ import annotations

from typing import Any, Final

ISSUE_BLOCK: Final[dict[str, Any]] = {
    "offered": 5,  # the 8 s hang-up is a short abandon
    "answered": 2,
    "answer_rate": 0.4,
    "answered_within_60s": 1,
    "qs60": 0.2,
    "qs60_of_answered": 0.5,
    "qs30": 0.2,
    "abandoned": 1,
    "short_abandons": 1,
    "wait_median_s": 25.0,
    "wait_p90_s": 75.0,
}
