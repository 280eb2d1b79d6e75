"""Start `synthseal-device run` as its own process and wait until it is ready: what the
demo, the benchmark and the tests do where systemd would on a device."""

import json
import subprocess
import sys
import time
from pathlib import Path

READY_LINE = b"agent ready"


class AgentProcess:
    """The agent process, its combined output appended to log_path."""

    def __init__(self, config_path, log_path):
        self.config_path = Path(config_path)
        self.log_path = Path(log_path)
        self.process = None
        self._log = None

    @property
    def pid(self):
        return self.process.pid

    def start(self, wait=True, timeout=60):
        self._ready_from = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "synthseal.device.cli", "run",
                                         "--config", str(self.config_path)],
                                        stdout=self._log, stderr=self._log)
        if wait:
            self.wait_ready(timeout)
        return self

    def output_since_start(self):
        return self.log_path.read_bytes()[self._ready_from:].decode(errors="replace")

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while READY_LINE not in self.log_path.read_bytes()[self._ready_from:]:
            if self.process.poll() is not None:
                raise RuntimeError("the agent exited with status %s: %s"
                                   % (self.process.returncode, self.output_since_start().strip()))
            if time.monotonic() > deadline:
                raise RuntimeError("the agent was not ready within %s s: %s" % (timeout, self.output_since_start()))
            time.sleep(0.05)

    def kill(self):
        """SIGKILL: what a crash or a power cut looks like to the agent."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        self._reap()

    def stop(self, timeout=30):
        """SIGTERM, as systemctl stop sends: the agent seals what it queued, then exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._reap()

    def _reap(self):
        if self.process is not None:
            self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


def write_config(path, sections):
    """Write an agent configuration from {section: {key: value}} (strings, numbers, booleans)."""
    lines = []
    for section, values in sections.items():
        lines.append("[%s]" % section)
        for key, value in values.items():
            if isinstance(value, bool):
                text = "true" if value else "false"
            else:
                text = json.dumps(value)
            lines.append("%s = %s" % (key, text))
    Path(path).write_text("\n".join(lines) + "\n")
