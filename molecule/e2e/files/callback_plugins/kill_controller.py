"""Kill the controller mid-batch, as a crash or a lost laptop would: once the task named by
LLMFLEET_E2E_KILL_AFTER_TASK has changed LLMFLEET_E2E_KILL_ON_HOST, SIGKILL the playbook's whole
process group (run it under setsid), before the next task is sent. Writes the moment to
LLMFLEET_E2E_KILL_MARK first, so that the test knows the kill came from here.

Enable with ANSIBLE_CALLBACK_PLUGINS=<this directory> and ANSIBLE_CALLBACKS_ENABLED=kill_controller.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: kill_controller
type: aggregate
short_description: SIGKILL the controller after a task changed a host (llmfleet's e2e tests)
description: Reads LLMFLEET_E2E_KILL_AFTER_TASK, LLMFLEET_E2E_KILL_ON_HOST and LLMFLEET_E2E_KILL_MARK.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "kill_controller"
    CALLBACK_NEEDS_ENABLED = True

    def v2_runner_on_ok(self, result):
        task = os.environ.get("LLMFLEET_E2E_KILL_AFTER_TASK", "")
        host = os.environ.get("LLMFLEET_E2E_KILL_ON_HOST", "")
        if (
            result._task.get_name() == task
            and result._host.get_name() == host
            and result._result.get("changed")
        ):
            Path(os.environ["LLMFLEET_E2E_KILL_MARK"]).write_text(f"{time.time()}\n")
            os.killpg(os.getpgid(0), signal.SIGKILL)
