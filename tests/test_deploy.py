"""The deploy paths of the README, end to end, with real processes.

(a) ``ray job submit --working-dir . -- python jobs/classify.py ...`` to a real
    ``ray start --head`` on this machine (token authentication on, usage stats off).
(b) ``ray up cluster.yaml`` / ``ray submit cluster.yaml jobs/classify.py`` / ``ray down`` over SSH
    to this machine itself, with the local provider (root, sshd and rsync needed; skips otherwise).

Both run the real job on ``examples/images`` and read the Parquet back. The model is the bundle
shipped in the package, or the ``job_bundle`` test fixture while no bundle is shipped.

Neither test may disturb another Ray on the machine (the shared ``ray_session`` of the other
tests, or anybody else's). ``ray stop`` is never called here: it kills every Ray process of the
user. Instead:

- (a) runs ``ray start --head --block`` as the leader of its own session, with its own temp dir
  and free ports, and stops it with SIGTERM to that one process (Ray then stops everything it
  started); whatever is still in its session 5 s after it exits (20 s at most) is killed.
- ``ray up`` and ``ray down`` run ``ray stop`` on the node, so (b) runs the whole launcher session
  inside new PID and mount namespaces (``unshare``): ``ray stop`` there sees only the namespace's
  processes, ``/tmp/ray`` is a private bind mount, root's home directory for the SSH sessions is
  a temporary folder (a bind-mounted ``/etc/passwd``), each SSH connection is its own
  ``sshd -i`` (no port is opened), and every process the namespace started dies with it. The
  test checks that the session Ray outside still answers afterwards.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "images"
CLASSIFY = ROOT / "jobs" / "classify.py"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
VENV_BIN = Path(sys.executable).parent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CLASSIFY.is_file(), reason="jobs/classify.py is not there yet"),
]


def _example_images() -> list[Path]:
    return sorted(path for path in EXAMPLES.rglob("*")
                  if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES)


@pytest.fixture(scope="module")
def model_args(request) -> list[str]:
    """No arguments when the package ships its default bundle, else ``--model <test bundle>``."""
    from artsy.models.bundle import MANIFEST_NAME, default_bundle_path

    if (default_bundle_path() / MANIFEST_NAME).is_file():
        return []
    return ["--model", str(request.getfixturevalue("job_bundle"))]


def _check_output(output: Path) -> None:
    """The job wrote one ``ok`` row per example image, readable as a hive-partitioned table."""
    import pyarrow.dataset as ds

    from artsy.config import EMOTIONS

    table = ds.dataset(output, format="parquet", partitioning="hive").to_table()
    rows = table.to_pylist()
    assert len(rows) == len(_example_images()) == 12
    assert sorted(Path(row["path"]).name for row in rows) == sorted(
        path.name for path in _example_images())
    assert {row["status"] for row in rows} == {"ok"}, [row["error"] for row in rows]
    assert {row["label"] for row in rows} <= set(EMOTIONS)
    assert all(0.0 <= row["p_positive"] <= 1.0 for row in rows)
    assert "p_positive_effnet" in table.column_names  # the backbone ran in the actor
    assert all(row["emotion"] is not None for row in rows)
    assert len({row["run_date"] for row in rows}) == 1


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _processes() -> list[tuple[int, int, str]]:
    """``(pid, session id, command line)`` of every process visible in /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        session = int(stat[stat.rindex(")") + 2:].split()[3])
        found.append((int(entry.name), session, command))
    return found


def _ray_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("RAY_") or key == "RAY_USAGE_STATS_ENABLED"}
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", RAY_USAGE_STATS_ENABLED="0",
               **extra)
    return env


@pytest.fixture
def loopback_head(tmp_path_factory):
    """A real ``ray start --head`` (2 CPUs, token auth) in its own session; yields its env."""
    # Short path: Ray's unix socket paths must stay under 107 bytes.
    temp_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"artsy-head-{secrets.token_hex(4)}"
    temp_dir.mkdir()
    gcs, dashboard, client, agent, metrics = _free_ports(5)
    env = _ray_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    log = (tmp_path_factory.mktemp("head") / "ray-start.log").open("w")
    head = subprocess.Popen(
        ["ray", "start", "--head", "--block", f"--temp-dir={temp_dir}", "--num-cpus=2",
         "--object-store-memory=268435456", f"--port={gcs}", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dashboard}", f"--ray-client-server-port={client}",
         f"--dashboard-agent-listen-port={agent}", f"--metrics-export-port={metrics}"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dashboard}"
    ready = _authorized(f"{address}/api/version", env["RAY_AUTH_TOKEN"])
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                urllib.request.urlopen(ready, timeout=5).close()
                break
            except OSError:
                if head.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail(f"ray start --head did not come up:\n{Path(log.name).read_text()}")
                time.sleep(0.5)
        yield {"env": env, "address": address, "token": env["RAY_AUTH_TOKEN"]}
    finally:
        _stop_session(head)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _authorized(url: str, token: str) -> urllib.request.Request:
    return urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})


def _job_status(head: dict, submission: str) -> str:
    """The job's status from the Jobs REST API (``SUCCEEDED``, ``FAILED``, ...)."""
    request = _authorized(f"{head['address']}/api/jobs/{submission}", head["token"])
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["status"]


def _stop_session(leader: subprocess.Popen, *, grace: float = 20.0) -> None:
    """Stop ``ray start --block`` by SIGTERM, then SIGKILL whatever is left in its session."""
    leader.send_signal(signal.SIGTERM)
    try:
        leader.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        leader.kill()
        leader.wait(timeout=30)
    deadline = time.monotonic() + 5
    while True:  # Ray's children (e.g. the dashboard's forkserver) exit shortly after.
        left = [pid for pid, session, _ in _processes() if session == leader.pid]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_ray_job_submit_runs_classify_on_a_loopback_head(loopback_head, model_args, tmp_path):
    output = tmp_path / "labels"
    submission = f"artsy-test-{secrets.token_hex(4)}"
    submit = subprocess.run(
        ["ray", "job", "submit", f"--address={loopback_head['address']}",
         f"--submission-id={submission}", "--working-dir", ".", "--",
         "python", "jobs/classify.py", "--input", "examples/images", "--output", str(output),
         *model_args],
        cwd=ROOT, env=loopback_head["env"], capture_output=True, text=True, timeout=900)
    assert submit.returncode == 0, submit.stdout[-4000:] + submit.stderr[-4000:]
    assert _job_status(loopback_head, submission) == "SUCCEEDED"
    assert re.search(r"images seen\s+12\b", submit.stdout), submit.stdout[-4000:]
    _check_output(output)
    # Token authentication is on: the same request with another token is refused (403).
    with pytest.raises(urllib.error.HTTPError, match="40[13]"):
        urllib.request.urlopen(_authorized(f"{loopback_head['address']}/api/jobs/{submission}",
                                           secrets.token_hex(32)), timeout=30)


# --- (b) ray up / ray submit / ray down over SSH, in private PID and mount namespaces --------

#: Runs as PID 1 of new PID + mount namespaces; every path comes from the environment.
_LAUNCHER_SESSION = r"""
set -u
mount --bind "$T/ray-tmp" /tmp/ray || exit 3      # the cluster's /tmp/ray: private
mount --bind "$T/passwd" /etc/passwd || exit 3    # root's home for SSH sessions: $T/node-home
mount --bind "$T/shadow" /etc/shadow || exit 3    # root's password unlocked for key login
export HOME="$T/client-home" TMPDIR="$T/client-tmp"  # the launching machine's ~ and temp dir
cd "$ROOT"
step() {  # step NAME COMMAND...: run with a time limit, log, record "NAME RC MILLISECONDS"
    local name=$1 start=$(date +%s%N); shift
    timeout --kill-after=10 "$STEP_TIMEOUT" "$@" > "$T/$name.log" 2>&1
    local rc=$?
    echo "$name $rc $(( ($(date +%s%N) - start) / 1000000 ))" >> "$T/steps"
    return $rc
}
step token ray get-auth-token --generate &&
step up ray up -y --no-config-cache "$T/cluster.yaml" &&
step submit ray submit "$T/cluster.yaml" "$ROOT/jobs/classify.py" -- \
    --input "$T/node-home/artsy/examples/images" --output "$T/labels" $MODEL_ARGS &&
step submit_bad ray submit "$T/cluster.yaml" "$ROOT/jobs/classify.py" -- \
    --input "$T/no-such-folder" --output "$T/labels-bad" $MODEL_ARGS
step down ray down -y "$T/cluster.yaml"
sleep 2
# What `ray down` left running (it prints "ray: command not found" and exits 0 when the
# node's venv is not on PATH over SSH, leaving Ray up): GCS and raylet processes.
for cmdline in /proc/[0-9]*/cmdline; do
    program=$(tr '\0' '\n' < "$cmdline" 2>/dev/null | head -n 1)
    case "${program##*/}" in gcs_server|raylet) echo "$program" ;; esac
done > "$T/left"
exit 0
"""


def _require_launcher_tools() -> None:
    """Skip unless this machine can be its own SSH node in a private namespace."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("ray up over SSH to this machine needs Linux and root (namespaces, sshd -i)")
    missing = [tool for tool in ("/usr/sbin/sshd", "ssh", "ssh-keygen", "rsync", "unshare",
                                 "mount", "timeout")
               if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"ray up over SSH needs {', '.join(missing)} "
                    "(Debian: apt-get install openssh-server rsync; .ci/run does it)")
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"cannot create PID/mount namespaces here: {probe.stderr.strip()}")


def _make_node_venv(home: Path) -> None:
    """~/artsy-venv on the node: a venv layered on this interpreter's site-packages.

    It stands in for a node whose Python already has artsy's dependencies (a fresh one would
    download 2.4 GB): ``setup_commands`` then find it, put it on PATH and ``pip install -e`` the
    mounted checkout into it, without deps (pip.conf) so this interpreter's packages stay as they
    are. Its own ``ray`` script makes Ray's processes on the node run this venv's Python.
    """
    venv = home / "artsy-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    site_packages = next((venv / "lib").glob("python3*/site-packages"))
    import site

    (site_packages / "_artsy_test_base.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    (venv / "pip.conf").write_text("[install]\nno-deps = true\n")
    ray_script = (VENV_BIN / "ray").read_text().split("\n", 1)[1]
    (venv / "bin" / "ray").write_text(f"#!{venv / 'bin' / 'python'}\n{ray_script}")
    (venv / "bin" / "ray").chmod(0o755)


def _render_cluster(work: Path, ports: list[int]) -> dict:
    """cluster.yaml with its placeholders filled for this machine, reached by ``sshd -i``."""
    import yaml

    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    config["cluster_name"] = f"artsy-test-{secrets.token_hex(4)}"
    config["provider"].update(head_ip="127.0.0.1", worker_ips=[])
    config["auth"] = {
        "ssh_user": "root",
        "ssh_private_key": str(work / "client-home" / ".ssh" / "id_ed25519"),
        # No TCP port: each SSH connection gets its own sshd in inetd mode.
        "ssh_proxy_command": f"/usr/sbin/sshd -i -f {work / 'sshd_config'} -E {work / 'sshd.log'}",
    }
    # Free ports instead of Ray's fixed defaults (6379, 10001, 8265, ...), which another Ray
    # on this machine may hold; the rest of every command is cluster.yaml's own.
    gcs, client, dashboard, agent, metrics = ports
    config["head_start_ray_commands"] = [
        command.replace("--port=6379", f"--port={gcs} --ray-client-server-port={client} "
                        f"--dashboard-port={dashboard} --dashboard-agent-listen-port={agent} "
                        f"--metrics-export-port={metrics} --object-store-memory=268435456")
        for command in config["head_start_ray_commands"]]
    assert "REPLACE_ME" not in yaml.safe_dump(config)
    (work / "cluster.yaml").write_text(yaml.safe_dump(config))
    return config


def _prepare_node(work: Path) -> None:
    """Keys, sshd config, the node's home and the files bind-mounted in the namespace."""
    client_ssh = work / "client-home" / ".ssh"
    client_ssh.mkdir(parents=True)
    node_home = work / "node-home"
    node_home.mkdir(mode=0o755)
    skeleton = Path("/etc/skel/.bashrc")  # Debian's returns early unless interactive
    (node_home / ".bashrc").write_text(skeleton.read_text() if skeleton.is_file() else "")
    (work / "ray-tmp").mkdir()
    (work / "client-tmp").mkdir()
    for key in (client_ssh / "id_ed25519", work / "host_ed25519"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                       check=True, timeout=60)
    shutil.copy(client_ssh / "id_ed25519.pub", work / "authorized_keys")
    (work / "sshd_config").write_text(
        f"HostKey {work / 'host_ed25519'}\n"
        f"AuthorizedKeysFile {work / 'authorized_keys'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile none\n"
        "LogLevel VERBOSE\n")
    passwd = Path("/etc/passwd").read_text().splitlines()
    (work / "passwd").write_text("".join(
        f"root:x:0:0:root:{node_home}:/bin/bash\n" if line.startswith("root:") else line + "\n"
        for line in passwd))
    shadow = Path("/etc/shadow").read_text().splitlines()
    (work / "shadow").write_text("".join(
        "root:*:" + line.split(":", 2)[2] + "\n" if line.startswith("root:") else line + "\n"
        for line in shadow))
    (work / "shadow").chmod(0o640)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
    Path("/tmp/ray").mkdir(exist_ok=True)  # mount point for the private /tmp/ray
    _make_node_venv(node_home)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _steps(work: Path) -> dict[str, tuple[int, float]]:
    if not (work / "steps").is_file():
        return {}
    return {name: (int(rc), int(milliseconds) / 1000) for name, rc, milliseconds in
            (line.split() for line in (work / "steps").read_text().splitlines())}


def test_ray_up_submit_down_over_ssh_with_cluster_yaml(model_args, tmp_path, ray_session):
    _require_launcher_tools()
    work = tmp_path / "launcher"
    work.mkdir()
    _prepare_node(work)
    cluster = _render_cluster(work, _free_ports(5))
    env = _ray_env(T=str(work), ROOT=str(ROOT), MODEL_ARGS=" ".join(model_args),
                   STEP_TIMEOUT="900")
    try:
        session = subprocess.run(
            ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "bash", "-c",
             _LAUNCHER_SESSION],
            env=env, capture_output=True, text=True, timeout=2400)
    finally:  # Ray's SSH control-socket folder, outside the private mounts
        control = Path(f"/tmp/ray_ssh_{_sha(getpass.getuser())}")
        shutil.rmtree(control / _sha(cluster["cluster_name"]), ignore_errors=True)
        if control.is_dir() and not any(control.iterdir()):
            control.rmdir()
    steps = _steps(work)

    def log(name: str) -> str:
        path = work / f"{name}.log"
        return f"--- {name}.log ---\n{path.read_text()[-6000:]}" if path.is_file() else ""

    report = f"{steps}\n{session.stderr[-2000:]}\n" + "\n".join(
        log(name) for name in ("token", "up", "submit", "down"))
    assert session.returncode == 0, report
    for name in ("token", "up", "submit", "down"):
        assert steps.get(name, (None,))[0] == 0, report
    assert (work / "node-home" / ".ray" / "auth_token").read_text() == (
        work / "client-home" / ".ray" / "auth_token").read_text()
    assert "artsy-venv" in (work / "node-home" / ".bashrc").read_text()
    site_packages = next((work / "node-home" / "artsy-venv" / "lib").glob("python3*/site-packages"))
    assert list(site_packages.glob("__editable__*artsy*")), "setup did not pip-install ~/artsy"
    assert re.search(r"images seen\s+12\b", (work / "submit.log").read_text()), report
    _check_output(work / "labels")
    # A job that fails (here: exit 2, missing input) fails `ray submit`, so cron/systemd see it.
    assert steps["submit_bad"][0] != 0, report
    assert "classify.py: error" in (work / "submit_bad.log").read_text()
    assert not (work / "labels-bad").exists()
    assert (work / "left").read_text() == "", "ray down left Ray running on the node"
    # Nothing the namespace started survives it, and the Ray outside never noticed.
    assert not [command for _, _, command in _processes() if str(work) in command]
    assert ray_session.get(ray_session.put("still here"), timeout=60) == "still here"
    print(json.dumps({name: round(seconds, 1) for name, (_, seconds) in steps.items()}))
