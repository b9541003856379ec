"""A one-node Slurm cluster in a temporary directory: the tests' fixture and a recipe.

Try the Slurm launcher on a laptop (Debian/Ubuntu, as root)::

    apt-get install slurm-wlm munge
    python -m tests.slurm_cluster          # starts it, prints SLURM_CONF, waits for Ctrl-C
    export SLURM_CONF=...                   # in another shell, as printed
    python -m harness run ... --launcher slurm --launcher-config slurm.toml

Everything lives under one directory: the munge key and socket, ``slurm.conf``, the
state, spool and log folders, and the daemons' pid files. Nothing in ``/etc`` is read
or changed, the two ports are free ones picked at start, and :meth:`SlurmCluster.stop`
ends exactly the daemons it started (by process id).

Slurm runs without accounting (no slurmdbd), as a laptop cluster usually does: ``sacct``
then fails, and the launcher reads the queue with ``squeue`` instead.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "scontrol", "sinfo")


def missing() -> str:
    """Why a cluster cannot start here ('' when it can)."""
    if os.geteuid() != 0:
        return "a one-node Slurm needs root (slurmd starts jobs as their user)"
    absent = [p for p in DAEMONS + CLIENTS if shutil.which(p) is None
              and not Path("/usr/sbin", p).exists()]
    if absent:
        return f"Slurm is not installed (no {', '.join(absent)}): apt-get install slurm-wlm munge"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "no 'munge' user (the munge package creates it)"
    return ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _exe(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


CONF = """\
ClusterName=seqbench-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket={root}/munge/munge.socket,cred_expire=5
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
MinJobAge=600
MailProg=/bin/true
KillWait=5
InactiveLimit=0
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


@dataclass
class SlurmCluster:
    """One node, one partition (``debug``). ``env`` holds what a client needs."""

    root: Path
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def run(self, *cmd: str, check: bool = True) -> str:
        """A Slurm client command against this cluster; its stdout."""
        res = subprocess.run(list(cmd), capture_output=True, text=True, timeout=30,
                             env={**os.environ, **self.env}, check=False)
        if check and res.returncode:
            raise RuntimeError(f"{' '.join(cmd)}: {res.stderr.strip()}")
        return res.stdout

    def start(self, timeout_s: float = 60) -> SlurmCluster:
        host = socket.gethostname().split(".")[0]
        munge = pwd.getpwnam("munge")
        for sub in ("munge", "state", "spool", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)  # munged (as munge) must reach its folder
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        for p in (self.root / "munge", key):
            os.chown(p, munge.pw_uid, munge.pw_gid)
        key.chmod(0o400)
        (self.root / "munge").chmod(0o700 | 0o055)
        mem_mb = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.8)
        self.conf.write_text(CONF.format(host=host, root=self.root, ctld_port=_free_port(),
                                         slurmd_port=_free_port(), cpus=os.cpu_count(),
                                         mem_mb=mem_mb))
        m = self.root / "munge"
        subprocess.run(["runuser", "-u", "munge", "--", _exe("munged"), f"--key-file={key}",
                        f"--socket={m}/munge.socket", f"--pid-file={m}/munged.pid",
                        f"--log-file={m}/munged.log", f"--seed-file={m}/munged.seed"],
                       check=True, capture_output=True, timeout=30)
        self.pids["munged"] = self._pid(m / "munged.pid", timeout_s)
        env = {**os.environ, **self.env}
        for daemon, pidfile in (("slurmctld", "slurmctld.pid"), ("slurmd", "slurmd.pid")):
            subprocess.run([_exe(daemon), "-f", str(self.conf)], env=env, check=True,
                           capture_output=True, timeout=30)
            self.pids[daemon] = self._pid(self.root / pidfile, timeout_s)
        deadline = time.monotonic() + timeout_s
        while "idle" not in self.run("sinfo", "-h", "-o", "%T", check=False):
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the node did not become idle in {timeout_s} s; "
                                   f"logs in {self.root / 'log'}")
            time.sleep(0.2)
        return self

    def _pid(self, path: Path, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                return int(path.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                time.sleep(0.05)
        raise RuntimeError(f"{path} did not appear in {timeout_s} s")

    def stop(self) -> None:
        """Cancel every job, then end the daemons this cluster started, by pid."""
        if "slurmctld" in self.pids:
            self.run("scancel", "--full", "--user=root", check=False)
        for name in reversed(DAEMONS):
            pid = self.pids.pop(name, None)
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie of ours still answers kill(0); its /proc status says so
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def start_cluster(root: Path | None = None) -> SlurmCluster:
    return SlurmCluster(Path(root or tempfile.mkdtemp(prefix="seqbench-slurm-"))).start()


if __name__ == "__main__":  # the recipe: a cluster until Ctrl-C
    why = missing()
    if why:
        raise SystemExit(why)
    t0 = time.monotonic()
    cluster = start_cluster()
    print(f"one-node Slurm up in {time.monotonic() - t0:.1f} s; in another shell:\n"
          f"  export SLURM_CONF={cluster.conf}\nCtrl-C stops it.", flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
