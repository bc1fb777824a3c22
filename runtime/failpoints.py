"""Named points where a test may have the agent killed (kill -9), to prove each step's crash safety.

`SEALNET_FAILPOINT=<name>` in the environment makes the process SIGKILL
itself when it reaches that point: no cleanup handler runs, exactly as if
an operator or the OOM killer had killed it there. Unset, a point costs one
dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "SEALNET_FAILPOINT"


def hit(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
