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


def wait_for(what: str, check, timeout: float, interval: float = 0.5, errors=(OSError, ValueError, KeyError)):
    """Poll `check()` until it returns something truthy, and return that; fail naming `what` and
    the last value or error (one of `errors`; requests' errors are OSErrors) after `timeout`
    seconds. A test's bounded wait, never a timing assertion."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except errors as e:
            last = e
        time.sleep(interval)
    raise AssertionError(f"gave up waiting for {what}; last: {last!r}")
