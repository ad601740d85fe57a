"""Servers in tests: ``i2f-deploy serve`` in a subprocess on loopback (torch blocked), and stand-in
HTTP servers a test scripts."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from i2f_deploy.loadtest import free_port, stop_server

# Runs the CLI with torch unimportable; every attempt to import it is printed at once (the
# process may end by a signal, so nothing is left to print at exit).
NO_TORCH_SERVER = """
import sys
class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            print("TORCH-IMPORT-ATTEMPT", name, flush=True)
            raise ImportError("torch is blocked in this server process")
sys.meta_path.insert(0, BlockTorch())
print("TORCH-BLOCKER-ACTIVE", "torch" in sys.modules, flush=True)
from i2f_deploy.cli import main
sys.argv = ["i2f-deploy", *sys.argv[1:]]
main()
"""


@contextlib.contextmanager
def running_server(artifact_dir: Path, log: Path, *options: str,
                   host: str = "127.0.0.1") -> Iterator[tuple[str, subprocess.Popen]]:
    """``i2f-deploy serve`` in a subprocess on ``host`` (a loopback address; a free port) with
    torch blocked; yields (base URL, process) once ``/health`` answers, and stops it afterwards."""
    port = free_port()
    command = [sys.executable, "-c", NO_TORCH_SERVER, "serve", str(artifact_dir), "--host", host,
               "--port", str(port), *options]
    with open(log, "w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                assert process.poll() is None, log.read_text()
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the server did not start:\n" + log.read_text()
                time.sleep(0.2)
            yield url, process
        finally:
            stop_server(process)


class QuietHandler(BaseHTTPRequestHandler):
    """A stand-in's request handler: answers in one call and logs nothing."""

    def send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class LoopbackServer(ThreadingHTTPServer):
    """A stand-in HTTP server on 127.0.0.1 (a free port), serving from a thread once made."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"
