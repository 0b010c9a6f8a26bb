"""The servers the tests start (a hub, the OpenID provider, slapd): wait until one answers, and
stop it with the processes it started."""
import os
import signal
import subprocess
import time


def wait_until_ready(process: subprocess.Popen, ready, timeout: float, what: str, log, interval: float = 0.2) -> None:
    """Poll `ready()` until it is true; fail, naming `what` and showing `log()`, when the process
    exits first or `timeout` seconds pass. A refused connection (OSError, requests' errors
    included) counts as not ready yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{log()}")
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(interval)
    raise RuntimeError(f"{what} did not answer within {timeout:.0f}s:\n{log()}")


def stop_group(process: subprocess.Popen | None, timeout: float) -> None:
    """SIGTERM to the process group of a server started with start_new_session=True, SIGKILL if
    it has not exited after `timeout` seconds."""
    if process and process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
