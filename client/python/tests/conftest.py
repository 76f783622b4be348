"""The real gradlabd for the client's tests: started from the build folder ($GRADLABD, else
build/server/gradlabd of this repository) on free ports, with a state folder of the test's
own, and stopped after it."""
import os
import signal
import socket
import subprocess
import sys
import threading

import pytest

REPO = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
GRADLABD = os.environ.get("GRADLABD", os.path.join(REPO, "build", "server", "gradlabd"))

# Quick runs: an mlp on 256 generated images, two epochs, a second or so.
QUICK = dict(model="mlp", dataset="synthetic", epochs=2, max_train_samples=256,
             max_test_samples=64, batch_size=32)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gradlabd:
    """One gradlabd process; start() again after stop() or kill() restarts it on the same
    ports and state folder."""

    def __init__(self, state_dir, flags=()):
        self.state_dir = str(state_dir)
        self.flags = list(flags)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.process = None

    def start(self):
        argv = [GRADLABD, f"--listen={self.address}", "--http_listen=", "--threads_per_job=1",
                f"--state_dir={self.state_dir}", *self.flags]
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)
        # Its log goes to the test's stderr (pytest shows it for a failed test).
        threading.Thread(target=lambda: [sys.stderr.write(line) for line in self.process.stderr],
                         daemon=True).start()
        timer = threading.Timer(60, self.process.kill)
        timer.start()
        try:
            for line in self.process.stdout:
                if "listening on port" in line:
                    return self
            raise RuntimeError(f"gradlabd exited with {self.process.wait()} before it served")
        finally:
            timer.cancel()

    def stop(self, sig=signal.SIGTERM):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=60)

    def kill(self):
        self.stop(signal.SIGKILL)


@pytest.fixture
def gradlabd(tmp_path):
    server = Gradlabd(tmp_path / "state").start()
    yield server
    server.stop()


@pytest.fixture
def client(gradlabd):
    import gradlab_client

    with gradlab_client.connect(gradlabd.address) as connected:
        yield connected
