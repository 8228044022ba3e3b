"""A throwaway Postfix on 127.0.0.1 for ``peer.postfix.smtp.4k`` (Debian's package).

Everything lives in one temp folder: ``conf/`` (a private main.cf and master.cf,
started with ``postfix -c conf start``), ``queue/``, ``data/`` and ``maillog``. The
machine's own /etc/postfix is only read (its master.cf is the template) and never
written; no default instance is started. Settings are Debian's defaults except:
the SMTP listener is ``127.0.0.1:PORT`` only, ``mydestination`` is the test domain,
every local recipient is accepted and delivered to ``discard:`` (Postfix commits each
message to its queue, fsync included, before the 250, then drops it), no service is
chrooted (the chroot would need a copy of /etc in the temp folder), and the log goes to
``maillog`` (no syslog here). Needs root (master starts as root, the daemons run as
``postfix``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from gateway.demo.network import free_port

DOMAIN = "bench.test"
RECIPIENT = f"user@{DOMAIN}"
SENDER = f"bench@{DOMAIN}"
TEMPLATE_MASTER = Path("/etc/postfix/master.cf")
START_TIMEOUT_S = 20.0
INSTALL_HINT = (
    "echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections"
    " && DEBIAN_FRONTEND=noninteractive apt-get install -y postfix"
)


def unavailable() -> str | None:
    """None if a private Postfix can be started here, else why not."""
    if shutil.which("postfix") is None or shutil.which("postconf") is None:
        return f"Postfix is not installed ({INSTALL_HINT})"
    if os.geteuid() != 0:
        return "Postfix's master must be started as root"
    if not TEMPLATE_MASTER.exists():
        return f"{TEMPLATE_MASTER} (the package's master.cf) is missing"
    return None


def _master_cf(port: int) -> str:
    """Debian's master.cf with the SMTP listener on 127.0.0.1:PORT and no chroot."""
    out = []
    for line in TEMPLATE_MASTER.read_text().splitlines():
        fields = line.split()
        if not fields or line[0] in "# \t" or len(fields) < 8:
            out.append(line)  # comments, continuation lines (-o ...), blank lines
            continue
        if fields[1] == "inet":
            if fields[0] == "smtp":
                out.append(f"127.0.0.1:{port} inet n - n - - smtpd")
            else:
                out.append("#" + line)  # no other network listener
            continue
        fields[4] = "n"  # chroot
        out.append("  ".join(fields))
    return "\n".join(out) + "\n"


def _main_cf(root: Path) -> str:
    return "\n".join(
        [
            "compatibility_level = 3.6",
            f"queue_directory = {root / 'queue'}",
            f"data_directory = {root / 'data'}",
            f"maillog_file = {root / 'maillog'}",
            f"maillog_file_prefixes = {root}",
            "myhostname = bench.localhost",
            f"myorigin = {DOMAIN}",
            f"mydestination = {DOMAIN}",
            "local_recipient_maps =",  # every mailbox of the test domain exists
            "local_transport = discard:bench",
            "alias_maps =",
            "alias_database =",
            "inet_interfaces = 127.0.0.1",
            "inet_protocols = ipv4",
            "mynetworks = 127.0.0.0/8",
            "biff = no",
            "append_dot_mydomain = no",
            "smtpd_banner = $myhostname ESMTP",
            "",
        ]
    )


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no maillog)"


class Postfix:
    """``with Postfix() as pf: ... pf.port``: started on entry, stopped and removed on exit."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="valise-bench-postfix-"))
        self.root.chmod(0o755)  # the daemons (user postfix) chdir into queue/ below it
        self.conf = self.root / "conf"
        self.port = free_port()
        self.master_pid = 0

    def _postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["postfix", "-c", str(self.conf), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    def start(self) -> Postfix:
        owner = subprocess.run(
            ["postconf", "-h", "-d", "mail_owner"], capture_output=True, text=True, check=True
        ).stdout.strip()
        self.conf.mkdir()
        (self.root / "queue").mkdir()
        (self.root / "data").mkdir()
        shutil.chown(self.root / "data", user=owner, group=owner)
        (self.conf / "main.cf").write_text(_main_cf(self.root))
        (self.conf / "master.cf").write_text(_master_cf(self.port))
        started = self._postfix("start")
        if started.returncode != 0:
            raise RuntimeError(
                f"postfix -c {self.conf} start: exit {started.returncode}:"
                f" {_tail(self.root / 'maillog')}"
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"Postfix never listened on 127.0.0.1:{self.port}:"
                        f" {_tail(self.root / 'maillog')}"
                    ) from None
                time.sleep(0.1)
        pid_file = self.root / "queue" / "pid" / "master.pid"
        self.master_pid = int(pid_file.read_text().split()[0]) if pid_file.exists() else 0
        return self

    def stop(self) -> None:
        if self.conf.exists():
            self._postfix("stop")
            deadline = time.monotonic() + 10
            while self.master_pid and _alive(self.master_pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if self.master_pid and _alive(self.master_pid):
                self._postfix("abort")
                with contextlib.suppress(OSError):
                    os.kill(self.master_pid, signal.SIGKILL)  # the master we started
        shutil.rmtree(self.root, ignore_errors=True)

    def cpu_seconds(self) -> float:
        """CPU seconds of master and its children: live ones, and those it has reaped."""
        if not self.master_pid:
            return 0.0
        total = _stat_cpu(self.master_pid, with_children=True)
        for entry in os.scandir("/proc"):
            if entry.name.isdigit() and _ppid(int(entry.name)) == self.master_pid:
                total += _stat_cpu(int(entry.name), with_children=True)
        return total

    def log_tail(self, lines: int = 3) -> str:
        return _tail(self.root / "maillog", lines)

    def __enter__(self) -> Postfix:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


_TICK = os.sysconf("SC_CLK_TCK")


def _fields(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return []


def _alive(pid: int) -> bool:
    fields = _fields(pid)
    return bool(fields) and fields[0] != "Z"


def _ppid(pid: int) -> int:
    fields = _fields(pid)
    return int(fields[1]) if fields else -1


def _stat_cpu(pid: int, *, with_children: bool) -> float:
    fields = _fields(pid)
    if not fields:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if with_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICK
