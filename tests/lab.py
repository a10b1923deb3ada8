"""A throw-away Dovecot IMAP server on loopback, for the tests that need a real server.

Modelled on ``../shared/imap-server/dovecot-lab`` but self-contained: it needs only Dovecot 2.3
(``apt-get install dovecot-imapd``) and the ``openssl`` command.  Everything (config, CA and
certificate, passwd-file, Maildirs, logs, sockets) lives in one temporary directory; nothing is
read from or written to ``/etc/dovecot``.

    lab = DovecotLab(no_move=True)
    lab.start()                       # ~0.1 s; ports are picked at runtime
    env = lab.add_user("alice", "secret")
    with env.connect() as client:     # imapclient.IMAPClient, logged in
        append_messages(client, "INBOX", [make_message("a@example.org")])
        read_folder(client, "INBOX")  # [FolderEntry(uid=1, message_id="a@example.org", ...)]
    lab.stop()

As root, the mail processes run as the system user ``dovelab`` (created on first use, as
dovecot-lab does), so the lab directory is made with ``tempfile.mkdtemp`` and chmod 0755;
pytest's ``tmp_path`` (below a 0700 directory) would not be reachable.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

MAIL_SYSUSER = "dovelab"
SPECIAL_FOLDERS = {"Drafts": "\\Drafts", "Sent": "\\Sent", "Junk": "\\Junk", "Trash": "\\Trash"}
# Provider layouts a test can ask for (DovecotLab(layout=...)): the folders (name -> SPECIAL-USE
# flag, "" for none), the personal namespace's prefix and separator.
LAYOUTS: dict[str, tuple[dict[str, str], str, str]] = {
    "default": (SPECIAL_FOLDERS, "", "/"),
    # Courier-IMAP and Debian's Cyrus: everything below "INBOX.", "." as the separator
    "courier": (SPECIAL_FOLDERS, "INBOX.", "."),
    # Gmail: [Gmail]/... names; All Mail (\All) holds every message, INBOX's too
    "gmail": (
        {
            "[Gmail]/Drafts": "\\Drafts",
            "[Gmail]/Sent Mail": "\\Sent",
            "[Gmail]/Spam": "\\Junk",
            "[Gmail]/Trash": "\\Trash",
            "[Gmail]/All Mail": "\\All",
            "[Gmail]/Important": "\\Important",
        },
        "",
        "/",
    ),
    # Microsoft 365 / Outlook.com names
    "microsoft": (
        {
            "Drafts": "\\Drafts",
            "Sent Items": "\\Sent",
            "Junk Email": "\\Junk",
            "Deleted Items": "\\Trash",
            "Archive": "\\Archive",
        },
        "",
        "/",
    ),
    # A server without SPECIAL-USE: folders found by their (localised) names only
    "no-special-use": ({"Entwürfe": "", "Gesendet": "", "Spam": "", "Papierkorb": ""}, "", "/"),
}
_USER_RE = re.compile(r"^[A-Za-z0-9._@+-]+$")


def find_dovecot() -> str | None:
    """Path of the dovecot master binary, or None when Dovecot is not installed."""
    for candidate in ("/usr/sbin/dovecot", shutil.which("dovecot")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def missing_reason() -> str | None:
    """Why a lab cannot run here (None when it can): used for pytest skips."""
    if os.environ.get("NDR_SKIP_IMAP"):
        return "NDR_SKIP_IMAP is set"
    if find_dovecot() is None:
        return "Dovecot is not installed (apt-get install dovecot-imapd)"
    if shutil.which("openssl") is None:
        return "the openssl command is not installed (apt-get install openssl)"
    return None


class LabError(RuntimeError):
    """The lab server could not be set up or started."""


@dataclass(frozen=True)
class LabEnv:
    """How to reach one user's mailbox on a running lab."""

    host: str
    port: int
    tls_port: int
    user: str
    password: str
    cafile: str

    def as_environ(self) -> dict[str, str]:
        """The variables dovecot-lab's ``env`` prints, for subprocess-based tests."""
        return {
            "IMAP_HOST": self.host,
            "IMAP_PORT": str(self.port),
            "IMAPS_PORT": str(self.tls_port),
            "IMAP_USER": self.user,
            "IMAP_PASS": self.password,
            "IMAP_CAFILE": self.cafile,
        }

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cafile)

    def connect(self, *, tls: bool = False, login: bool = True, timeout: float = 10.0):
        """A raw imapclient connection (independent of the code under test)."""
        import imapclient

        if tls:
            client = imapclient.IMAPClient(
                self.host, self.tls_port, ssl=True, ssl_context=self.ssl_context(), timeout=timeout
            )
        else:
            client = imapclient.IMAPClient(self.host, self.port, ssl=False, timeout=timeout)
        client.normalise_times = False
        if login:
            client.login(self.user, self.password)
        return client


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _mail_ids() -> tuple[int, int]:
    """uid/gid the mail processes run as: ``dovelab`` as root, else ourselves."""
    if os.geteuid() != 0:
        return os.getuid(), os.getgid()
    try:
        pw = pwd.getpwnam(MAIL_SYSUSER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                MAIL_SYSUSER,
            ],
            check=False,
            capture_output=True,
        )
        try:
            pw = pwd.getpwnam(MAIL_SYSUSER)
        except KeyError as exc:
            raise LabError(f"could not create the system user {MAIL_SYSUSER}") from exc
    return pw.pw_uid, pw.pw_gid


def _imap_quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def probe_capabilities(port: int, user: str, password: str, timeout: float = 5.0) -> list[str]:
    """LOGIN over a bare socket and return the post-login CAPABILITY list."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        f = sock.makefile("rb")
        f.readline()  # greeting
        sock.sendall(
            f"a LOGIN {_imap_quote(user)} {_imap_quote(password)}\r\n"
            "b CAPABILITY\r\nc LOGOUT\r\n".encode()
        )
        caps: list[str] = []
        for raw in f:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line.startswith("* CAPABILITY "):
                caps = line.split()[2:]
            elif line.startswith("a NO") or line.startswith("a BAD"):
                raise LabError(f"probe login refused: {line}")
            elif line.startswith("c "):
                break
        return caps


# Post-login capability list of this Dovecot with the lab's config, learnt once per process
# (keyed by the binary) so that a no-MOVE lab normally starts only once.
_caps_cache: dict[tuple[str, int], list[str]] = {}


def _caps_key() -> tuple[str, int]:
    binary = find_dovecot() or ""
    return binary, os.stat(binary).st_mtime_ns if binary else 0


@dataclass
class DovecotLab:
    """One throw-away Dovecot: plain IMAP on ``port``, implicit TLS on ``tls_port``.

    ``no_move`` hides MOVE and (unless ``uidplus`` is given) UIDPLUS from CAPABILITY;
    ``uidplus=False`` hides UIDPLUS.  Dovecot still *executes* MOVE and UID EXPUNGE and still
    sends COPYUID: the lab tests which path the client chooses, not how a server refuses.

    ``oauth2_introspection_url`` adds an ``oauth2`` passdb for ``oauth2_mechanisms`` (XOAUTH2
    and OAUTHBEARER by default): Dovecot POSTs ``token=...`` to the URL and accepts the login
    when the JSON answer has ``"active": true`` and ``"username"`` equal to the user (who
    must exist: ``add_user``; the password is then only for PLAIN/LOGIN).
    """

    no_move: bool = False
    uidplus: bool | None = None
    max_line: int = 65536
    user: str = "test"
    password: str = "test"
    # OAuth2: an oauth2 passdb validating XOAUTH2/OAUTHBEARER tokens against this URL
    # (introspection_mode = post; the answer must be {"active": true, "username": USER}).
    oauth2_introspection_url: str | None = None
    oauth2_mechanisms: tuple[str, ...] = ("xoauth2", "oauthbearer")
    mail_format: str = "maildir"  # or "sdbox" (benchmarks: server cost without Maildir's)
    layout: str = "default"  # a key of LAYOUTS: the folders and namespace of a provider
    hide: tuple[str, ...] = ()  # more capabilities to hide (e.g. "CONDSTORE", "SPECIAL-USE")
    # Dovecot's quota plugin (count backend) with this many messages per user; None: no quota.
    quota_messages: int | None = None
    # IMAP sessions the server takes at once (imap processes); above 256 the process and
    # client limits are raised to match and the server gets the hard open-file limit.
    max_connections: int = 256
    keep: bool = field(default_factory=lambda: bool(os.environ.get("NDR_KEEP_LAB")))

    dir: Path = field(init=False)
    port: int = field(init=False, default=0)
    tls_port: int = field(init=False, default=0)
    _proc: subprocess.Popen[bytes] | None = field(init=False, default=None, repr=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock, repr=False)
    _cap_override: str | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        if not _USER_RE.match(self.user):
            raise ValueError(f"bad user name {self.user!r}")
        self.dir = Path(tempfile.mkdtemp(prefix="ndr-dovecot-"))
        os.chmod(self.dir, 0o755)
        for sub in ("etc", "run", "state", "log", "mail", "ssl"):
            (self.dir / sub).mkdir()
            os.chmod(self.dir / sub, 0o755)
        self._muid, self._mgid = _mail_ids()
        os.chown(self.dir / "mail", self._muid, self._mgid)
        (self.dir / "etc" / "users.d").mkdir()
        os.chmod(self.dir / "etc" / "users.d", 0o755)
        self._make_cert()
        self.add_user(self.user, self.password)

    # ------------------------------------------------------------------ public
    @property
    def hidden_caps(self) -> frozenset[str]:
        hidden = {c.upper() for c in self.hide}
        if self.layout == "no-special-use":
            hidden.add("SPECIAL-USE")
        if self.no_move:
            hidden.add("MOVE")
        uidplus = (not self.no_move) if self.uidplus is None else self.uidplus
        if not uidplus:
            hidden.add("UIDPLUS")
        return frozenset(hidden)

    @property
    def cafile(self) -> str:
        return str(self.dir / "ssl" / "ca.pem")

    @property
    def log_path(self) -> Path:
        return self.dir / "log" / "dovecot.log"

    @property
    def env(self) -> LabEnv:
        return self.env_for(self.user, self.password)

    def env_for(self, user: str, password: str) -> LabEnv:
        return LabEnv("127.0.0.1", self.port, self.tls_port, user, password, self.cafile)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> DovecotLab:
        """Start the server (new ports the first time, the same ports on a restart)."""
        if self.running:
            return self
        keep_ports = bool(self.port)
        if self.hidden_caps and self._cap_override is None:
            known = _caps_cache.get(_caps_key())
            if known is not None:
                self._cap_override = self._caps_without_hidden(known)
        for attempt in range(5):
            if not keep_ports or attempt:
                self.port, self.tls_port = _free_port(), _free_port()
                if self.port == self.tls_port:
                    continue
            if self._launch_and_wait():
                break
        else:
            raise LabError(f"dovecot did not come up; log: {self.log_tail()}")
        if self.hidden_caps and self._cap_override is None:
            self._apply_cap_override()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to every process of the server (connections are closed) and wait for them.

        Signalling the whole process group, not only the master, makes this take ~10 ms
        instead of the master's ~1 s shutdown wait.
        """
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._killpg()
        self._reap_group(proc.pid, timeout)
        self._proc = None

    def kill(self) -> None:
        """SIGKILL the master and all its children: a crashed server, for fault tests."""
        proc = self._proc
        if proc is None:
            return
        self._killpg()
        proc.wait(5)
        self._reap_group(proc.pid, 5)
        self._proc = None
        self._remove_dead_dotlocks()

    def _remove_dead_dotlocks(self) -> None:
        """Delete the dotlocks (``dovecot-uidlist.lock`` and the like) the killed processes left.

        A process killed between creating a dotlock and writing its PID into it leaves an empty
        lock file, and Dovecot waits out its 2-minute stale timeout before overriding one
        without a PID. A real server comes back after a crash minutes later; the lab comes back
        in milliseconds, so it clears them itself (every process that could hold one is dead).
        """
        for lock in (self.dir / "mail").rglob("*.lock"):
            with contextlib.suppress(OSError):
                lock.unlink()

    def restart(self) -> DovecotLab:
        self.stop()
        return self.start()

    def cleanup(self) -> None:
        """Stop and delete the directory (unless NDR_KEEP_LAB is set)."""
        self.stop()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def add_user(self, user: str, password: str) -> LabEnv:
        """Add a user; works while running.  (Replacing a password takes up to 1 s to be seen.)"""
        if not _USER_RE.match(user) or user.startswith("."):
            raise ValueError(f"bad user name {user!r} (allowed: A-Z a-z 0-9 . _ @ + -)")
        if not password or ":" in password or "\n" in password:
            raise ValueError("password must be non-empty, without ':' or newline")
        home = self.dir / "mail" / user
        with self._lock:
            # One passwd-file per user: Dovecot stats a passwd-file at most once a second, so a
            # user added to a shared file right after a login could not log in for up to 1 s;
            # a new file is opened on the user's first lookup.
            path = self.dir / "etc" / "users.d" / user
            tmp = path.with_name(f".{user}.tmp")
            tmp.write_text(f"{user}:{{PLAIN}}{password}:{self._muid}:{self._mgid}::{home}::\n")
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
            home.mkdir(exist_ok=True)
            os.chown(home, self._muid, self._mgid)
            os.chmod(home, 0o700)
        return self.env_for(user, password)

    def log_matches(self, pattern: str, at_least: int = 1, timeout: float = 5.0) -> list[str]:
        """The log's matches of ``pattern`` (its first group), once there are ``at_least``.

        Dovecot's log process writes a login line a moment after the client has
        its answer, so a test that reads the log right after logging out can see
        it without that line. Waits up to ``timeout`` for the lines, then
        returns what there is, so an assertion on the result still fails.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                text = self.log_path.read_text(errors="replace")
            except OSError:
                text = ""
            found = re.findall(pattern, text)
            if len(found) >= at_least or time.monotonic() > deadline:
                return found
            time.sleep(0.02)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> DovecotLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # ------------------------------------------------------------------ internals
    def _make_cert(self) -> None:
        d = self.dir / "ssl"

        def run(*args: str) -> None:
            res = subprocess.run(["openssl", *args], cwd=d, capture_output=True, text=True)
            if res.returncode:
                raise LabError(f"openssl {args[0]} failed: {res.stderr.strip()}")

        ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
        run("req", "-x509", *ec, "-days", "3650", "-sha256", "-subj", "/CN=ndr-sweeper test CA",
            "-keyout", "ca.key", "-out", "ca.pem",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
        run("req", *ec, "-subj", "/CN=localhost", "-keyout", "key.pem", "-out", "req.csr")
        (d / "ext.cnf").write_text(
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
            "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n"
            "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
        )
        run("x509", "-req", "-in", "req.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "3650", "-sha256", "-extfile", "ext.cnf",
            "-out", "cert.pem")  # fmt: skip
        for name in ("req.csr", "ext.cnf", "ca.srl"):
            (d / name).unlink(missing_ok=True)
        for name in ("ca.pem", "cert.pem"):
            os.chmod(d / name, 0o644)
        # key.pem is read by the master (root, or ourselves) before it drops privileges
        os.chmod(d / "key.pem", 0o600)

    def _config(self) -> str:
        d = self.dir
        if os.geteuid() == 0:
            internal_user, internal_group, login_user, chroot = "dovecot", "dovecot", "dovenull", ""
        else:
            me = pwd.getpwuid(os.getuid()).pw_name
            import grp

            internal_user, internal_group = me, grp.getgrgid(os.getgid()).gr_name
            login_user, chroot = me, "chroot ="
        instance = hashlib.sha1(str(d).encode()).hexdigest()[:10]
        layout_folders, prefix, separator = LAYOUTS[self.layout]
        folders = "".join(
            f'  mailbox "{name}" {{\n'
            + (f"    special_use = {flag}\n" if flag else "")
            + "    auto = subscribe\n  }\n"
            for name, flag in layout_folders.items()
        )
        conf = textwrap.dedent(
            f"""\
            # generated by tests/lab.py
            instance_name = ndr-lab-{instance}
            base_dir = {d}/run
            state_dir = {d}/state
            log_path = {d}/log/dovecot.log
            info_log_path = {d}/log/dovecot.log
            debug_log_path = {d}/log/dovecot.log
            protocols = imap
            listen = 127.0.0.1
            shutdown_clients = yes
            default_internal_user = {internal_user}
            default_internal_group = {internal_group}
            default_login_user = {login_user}
            first_valid_uid = {self._muid}
            last_valid_uid = {self._muid}
            first_valid_gid = {self._mgid}
            last_valid_gid = {self._mgid}
            ssl = yes
            ssl_cert = <{d}/ssl/cert.pem
            ssl_key = <{d}/ssl/key.pem
            disable_plaintext_auth = no
            auth_mechanisms = plain login{self._oauth2_mechs()}
            auth_failure_delay = 0
            login_trusted_networks = 127.0.0.0/8
            mail_max_userip_connections = 200
            imap_max_line_length = {self.max_line}
            passdb {{
              driver = passwd-file
              args = scheme=PLAIN username_format=%u {d}/etc/users.d/%u
              {"mechanisms = plain login" if self.oauth2_introspection_url else ""}
            }}
            userdb {{
              driver = passwd-file
              args = username_format=%u {d}/etc/users.d/%u
            }}
            mail_location = {"sdbox:~/sdbox" if self.mail_format == "sdbox" else "maildir:~/Maildir"}
            mail_fsync = never
            # Past fs.inotify.max_user_instances (128 by default, for all labs of the machine's
            # mail user together) Dovecot stops using inotify and looks for new mail during IDLE
            # every mailbox_idle_check_interval (30 s by default): every second instead.
            mailbox_idle_check_interval = 1s
            namespace inbox {{
              inbox = yes
              separator = {separator}
              prefix = {prefix}
            """
        )
        conf += folders + "}\n"
        conf += textwrap.dedent(
            f"""\
            service imap-login {{
              {chroot}
              inet_listener imap {{
                port = {self.port}
              }}
              inet_listener imaps {{
                port = {self.tls_port}
                ssl = yes
              }}
            }}
            service imap {{
              process_limit = {self.max_connections}
            }}
            service auth {{
              {chroot}
            }}
            service anvil {{
              {chroot}
            }}
            """
        )
        if self._cap_override:
            conf += f"protocol imap {{\n  imap_capability = {self._cap_override}\n}}\n"
        if self.max_connections > 256:
            # anvil, auth and the login processes see every session: their limits too
            conf += (
                f"default_process_limit = {self.max_connections}\n"
                f"default_client_limit = {2 * self.max_connections + 100}\n"
            )
        conf += self._oauth2_passdb()
        if self.quota_messages is not None:
            conf += textwrap.dedent(
                f"""\
                mail_plugins = $mail_plugins quota
                plugin {{
                  quota = count:User quota
                  quota_vsizes = yes
                  quota_rule = *:messages={self.quota_messages}
                }}
                """
            )
        return conf

    def _oauth2_mechs(self) -> str:
        if not self.oauth2_introspection_url:
            return ""
        return " " + " ".join(self.oauth2_mechanisms)

    def _oauth2_passdb(self) -> str:
        """The oauth2 passdb block (and its args file), or "" without an introspection URL."""
        if not self.oauth2_introspection_url:
            return ""
        ext = self.dir / "etc" / "dovecot-oauth2.conf.ext"
        ext.write_text(
            f"introspection_url = {self.oauth2_introspection_url}\n"
            "introspection_mode = post\n"
            "force_introspection = yes\n"
            "username_attribute = username\n"
            "active_attribute = active\n"
            "active_value = true\n"
            "timeout_msecs = 5000\n"
        )
        os.chmod(ext, 0o644)
        mechs = " ".join(self.oauth2_mechanisms)
        return f"passdb {{\n  driver = oauth2\n  mechanisms = {mechs}\n  args = {ext}\n}}\n"

    def _launch_and_wait(self, timeout: float = 10.0) -> bool:
        """Launch the master in the foreground (own process group); True once both ports
        accept, False when it died (e.g. a port was taken meanwhile)."""
        dovecot = find_dovecot()
        if dovecot is None:
            raise LabError(missing_reason() or "dovecot not found")
        conf = self.dir / "etc" / "dovecot.conf"
        conf.write_text(self._config())
        (self.dir / "run" / "master.pid").unlink(missing_ok=True)
        with open(self.dir / "log" / "startup.log", "ab") as out:
            self._proc = subprocess.Popen(
                [dovecot, "-F", "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_raise_nofile if self.max_connections > 256 else None,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._reap_group(self._proc.pid, 5)
                self._proc = None
                return False
            if _accepts(self.port) and _accepts(self.tls_port):
                return True
            time.sleep(0.005)
        self.kill()
        return False

    def _apply_cap_override(self) -> None:
        """Hide capabilities: learn the real post-login list once per process, then reload
        with an explicit ``imap_capability`` (SIGHUP: new sessions see it at once)."""
        caps = probe_capabilities(self.port, self.user, self.password)
        _caps_cache[_caps_key()] = caps
        self._cap_override = self._caps_without_hidden(caps)
        (self.dir / "etc" / "dovecot.conf").write_text(self._config())
        assert self._proc is not None
        self._proc.send_signal(signal.SIGHUP)
        got: set[str] = set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:  # login processes of the old config may reset the connection meanwhile
                got = set(probe_capabilities(self.port, self.user, self.password))
            except (OSError, LabError):
                got = set(self.hidden_caps)
            if not got & self.hidden_caps:
                return
            time.sleep(0.01)
        raise LabError(f"capability override did not take effect: {sorted(got)}")

    def _caps_without_hidden(self, caps: list[str]) -> str:
        return " ".join(c for c in caps if c.upper() not in self.hidden_caps)

    def _killpg(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)

    @staticmethod
    def _reap_group(pgid: int, timeout: float) -> None:
        """Wait until no live process of the lab's process group is left (zombies, which
        init reaps in its own time, do not count: they hold no ports or files)."""
        deadline = time.monotonic() + timeout
        while _live_group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.005)
        if _live_group_members(pgid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)


def _raise_nofile() -> None:
    """In the child before exec: the soft open-file limit up to the hard one (a busy lab)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _live_group_members(pgid: int) -> list[int]:
    """PIDs in process group *pgid* that are not zombies (Linux /proc; else a killpg probe)."""
    if not os.path.isdir("/proc/self"):
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        return [pgid]
    live = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat[stat.rfind(b")") + 2 :].split()  # state ppid pgrp ...
        if len(rest) > 2 and int(rest[2]) == pgid and rest[0] not in (b"Z", b"X"):
            live.append(int(entry.name))
    return live


# ---------------------------------------------------------------------- mail helpers
_counter = itertools.count(1)


def make_message(
    message_id: str | None = None,
    *,
    subject: str = "test",
    sender: str = "alice@example.org",
    to: str = "bob@example.org",
    date: datetime | None = None,
    body: str = "hello\r\n",
    headers: Sequence[tuple[str, str]] = (),
) -> bytes:
    """A small RFC 5322 message with CRLF line ends; Message-ID without <> (added here)."""
    if message_id is None:
        message_id = f"m{next(_counter)}.{os.getpid()}@lab.example"
    date = date or datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    lines = [
        f"From: {sender}",
        f"To: {to}",
        f"Subject: {subject}",
        f"Date: {format_datetime(date)}",
        f"Message-ID: <{message_id}>",
        *(f"{k}: {v}" for k, v in headers),
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


@dataclass(frozen=True)
class LabMessage:
    """A message to append, with its flags and INTERNALDATE."""

    msg: bytes
    flags: Sequence[str] = ()
    internaldate: datetime | None = None


@dataclass(frozen=True)
class FolderEntry:
    uid: int
    message_id: str | None  # without <>
    flags: frozenset[str]


def _as_lab_message(m: bytes | LabMessage) -> LabMessage:
    return m if isinstance(m, LabMessage) else LabMessage(m)


def append_messages(
    client, folder: str, messages: Iterable[bytes | LabMessage], *, chunk: int = 500
) -> list[int]:
    """Append fast: MULTIAPPEND in chunks when the server has it, else one APPEND each.

    Returns the new UIDs in order (from APPENDUID), or [] when the server sends none.
    """
    msgs = [_as_lab_message(m) for m in messages]
    uids: list[int] = []
    if client.has_capability("MULTIAPPEND"):
        for i in range(0, len(msgs), chunk):
            items = []
            for m in msgs[i : i + chunk]:
                item: dict[str, object] = {"msg": m.msg, "flags": tuple(m.flags)}
                if m.internaldate is not None:
                    item["date"] = m.internaldate
                items.append(item)
            uids.extend(_appenduids(client.multiappend(folder, items)))
    else:
        for m in msgs:
            uids.extend(_appenduids(client.append(folder, m.msg, m.flags, m.internaldate)))
    return uids


def _appenduids(resp: object) -> Iterator[int]:
    # append() returns the tagged text; multiappend() returns (typ, [text])
    if isinstance(resp, tuple) and len(resp) == 2 and isinstance(resp[1], list):
        resp = resp[1][0] if resp[1] else b""
    text = resp.decode() if isinstance(resp, bytes) else str(resp)
    m = re.search(r"\[APPENDUID \d+ ([0-9:,]+)\]", text)
    if not m:
        return
    for part in m.group(1).split(","):
        lo, _, hi = part.partition(":")
        yield from range(int(lo), int(hi or lo) + 1)


_MSGID_FETCH = "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"
_MSGID_RE = re.compile(rb"^Message-ID:\s*<?([^>\s]*)>?", re.I | re.M)


def read_folder(client, folder: str) -> list[FolderEntry]:
    """(uid, Message-ID, flags) of every message in *folder*, sorted by UID (uses EXAMINE)."""
    from imapclient.response_parser import parse_fetch_response

    client.select_folder(folder, readonly=True)
    # "1:*" keeps the line short on any server (imapclient's fetch() wants a UID list)
    typ, raw = client._imap.uid("FETCH", "1:*", f"(UID FLAGS {_MSGID_FETCH})")
    if typ != "OK":
        raise LabError(f"FETCH in {folder} failed: {raw!r}")
    data = {} if raw == [None] else parse_fetch_response(raw, False, True)
    out = []
    for uid, item in data.items():
        header = next((v for k, v in item.items() if k.startswith(b"BODY[HEADER")), b"") or b""
        m = _MSGID_RE.search(header)
        flags = frozenset(f.decode() if isinstance(f, bytes) else str(f) for f in item[b"FLAGS"])
        out.append(FolderEntry(uid, m.group(1).decode() if m else None, flags))
    return sorted(out, key=lambda e: e.uid)


# ---------------------------------------------------------------------- OAuth2 provider
class TokenServer:
    """A small OAuth2 provider on loopback for the OAuth2 tests (no internet needed).

    Endpoints (``base`` = ``http://127.0.0.1:PORT``):

    - ``/authorize`` (GET): checks client_id, redirect_uri (loopback) and a S256
      code_challenge, then redirects to ``redirect_uri?code=...&state=...`` (``deny = True``:
      ``error=access_denied``; ``wrong_state = True``: another state).
    - ``/token`` (POST): ``authorization_code`` (verifies the PKCE code_verifier, the
      redirect_uri and the client secret), ``refresh_token`` (``rotate = True`` issues a new
      refresh token and retires the old one) and the device_code grant
      (``authorization_pending`` for ``device_pending_polls`` polls, then tokens).
    - ``/device`` (POST): a device code and user code.
    - ``/introspect`` (POST ``token=...``, what Dovecot's oauth2 passdb sends):
      ``{"active": true, "username": USER}`` for a live access token it issued.

    ``user`` is who signs in at the "browser"; ``revoke()`` kills every token issued so far.
    ``issued`` holds every token and code handed out (for "never in the logs" checks).
    """

    def __init__(
        self,
        user: str = "oauth-user",
        client_id: str = "test-client",
        client_secret: str | None = None,
        expires_in: int = 3600,
    ) -> None:
        self.user = user
        self.client_id = client_id
        self.client_secret = client_secret
        self.expires_in = expires_in
        self.rotate = False
        self.deny = False
        self.wrong_state = False
        self.device_pending_polls = 2
        self.issued: list[str] = []
        self.grants: list[str] = []  # grant_type of each /token request, in order
        self.introspections = 0
        self._codes: dict[str, dict[str, str]] = {}
        self._access: dict[str, tuple[str, float]] = {}
        self._refresh: dict[str, str] = {}
        self._devices: dict[str, dict[str, object]] = {}
        self._lock = threading.Lock()
        self._server: object = None

    # ------------------------------------------------------------------ public
    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"  # type: ignore[attr-defined]

    @property
    def introspection_url(self) -> str:
        return self.base + "/introspect"

    def start(self) -> TokenServer:
        from http.server import ThreadingHTTPServer

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()  # type: ignore[attr-defined]
            self._server.server_close()  # type: ignore[attr-defined]

    def config(self, **extra: str) -> dict[str, object]:
        """Account keys for a custom provider pointing here."""
        keys: dict[str, object] = {
            "auth": "oauth2",
            "oauth2_provider": "custom",
            "oauth2_client_id": self.client_id,
            "oauth2_authorize_url": self.base + "/authorize",
            "oauth2_token_url": self.base + "/token",
            "oauth2_scopes": ["imap", "offline_access"],
        }
        keys.update(extra)
        return keys

    def revoke(self) -> None:
        with self._lock:
            self._access.clear()
            self._refresh.clear()

    def refresh_tokens(self) -> list[str]:
        with self._lock:
            return list(self._refresh)

    # ------------------------------------------------------------------ internals
    def _new(self, prefix: str) -> str:
        token = f"{prefix}-{os.urandom(12).hex()}"
        self.issued.append(token)
        return token

    def _tokens(self, user: str) -> dict[str, object]:
        access, refresh = self._new("at"), self._new("rt")
        self._access[access] = (user, time.time() + self.expires_in)
        self._refresh[refresh] = user
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "refresh_token": refresh,
            "scope": "imap",
        }

    def _token(self, form: dict[str, str]) -> tuple[int, dict[str, object]]:
        bad_client = form.get("client_id") != self.client_id or (
            self.client_secret is not None and form.get("client_secret") != self.client_secret
        )
        if bad_client:
            return 401, {"error": "invalid_client", "error_description": "unknown client"}
        grant = form.get("grant_type", "")
        self.grants.append(grant)
        with self._lock:
            if grant == "authorization_code":
                code = self._codes.pop(form.get("code", ""), None)
                if code is None or code["redirect_uri"] != form.get("redirect_uri"):
                    return 400, {"error": "invalid_grant", "error_description": "bad code"}
                digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
                import base64

                challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
                if challenge != code["challenge"]:
                    return 400, {"error": "invalid_grant", "error_description": "PKCE failed"}
                return 200, self._tokens(self.user)
            if grant == "refresh_token":
                user = self._refresh.get(form.get("refresh_token", ""))
                if user is None:
                    return 400, {
                        "error": "invalid_grant",
                        "error_description": "Token has been expired or revoked.",
                    }
                answer = self._tokens(user)
                if self.rotate:
                    del self._refresh[form["refresh_token"]]
                else:
                    del self._refresh[str(answer["refresh_token"])]
                    del answer["refresh_token"]
                return 200, answer
            if grant == "urn:ietf:params:oauth:grant-type:device_code":
                dev = self._devices.get(form.get("device_code", ""))
                if dev is None:
                    return 400, {"error": "invalid_grant"}
                if int(dev["polls"]) < self.device_pending_polls:  # type: ignore[call-overload]
                    dev["polls"] = int(dev["polls"]) + 1  # type: ignore[call-overload]
                    return 400, {"error": "authorization_pending"}
                del self._devices[form["device_code"]]
                return 200, self._tokens(self.user)
        return 400, {"error": "unsupported_grant_type"}

    def _handler(self):  # type: ignore[no-untyped-def]
        import json
        import urllib.parse
        from http.server import BaseHTTPRequestHandler

        lab = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, obj: object, headers: dict[str, str] | None = None):
                data = json.dumps(obj).encode()
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                q = dict(urllib.parse.parse_qsl(parts.query))
                if parts.path != "/authorize":
                    self._send(404, {"error": "not_found"})
                    return
                redirect = q.get("redirect_uri", "")
                ok = (
                    q.get("client_id") == lab.client_id
                    and q.get("response_type") == "code"
                    and q.get("code_challenge_method") == "S256"
                    and q.get("code_challenge")
                    and re.match(r"http://(127\.0\.0\.1|localhost):\d+/$", redirect)
                )
                if not ok:
                    self._send(400, {"error": "invalid_request"})
                    return
                state = "forged" if lab.wrong_state else q.get("state", "")
                if lab.deny:
                    answer = {"error": "access_denied", "state": state}
                else:
                    code = lab._new("code")
                    with lab._lock:
                        lab._codes[code] = {
                            "redirect_uri": redirect,
                            "challenge": q["code_challenge"],
                        }
                    answer = {"code": code, "state": state}
                location = redirect + "?" + urllib.parse.urlencode(answer)
                self._send(302, {}, {"Location": location})

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                form = dict(urllib.parse.parse_qsl(self.rfile.read(n).decode()))
                if self.path == "/token":
                    self._send(*lab._token(form))
                elif self.path == "/device":
                    if form.get("client_id") != lab.client_id:
                        self._send(401, {"error": "invalid_client"})
                        return
                    device, user_code = lab._new("dc"), "WDJB-MJHT"
                    with lab._lock:
                        lab._devices[device] = {"polls": 0}
                    self._send(
                        200,
                        {
                            "device_code": device,
                            "user_code": user_code,
                            "verification_uri": lab.base + "/activate",
                            "expires_in": 60,
                            "interval": 0,
                        },
                    )
                elif self.path == "/introspect":
                    lab.introspections += 1
                    with lab._lock:
                        entry = lab._access.get(form.get("token", ""))
                    if entry is None or entry[1] < time.time():
                        self._send(200, {"active": False})
                    else:
                        self._send(200, {"active": True, "username": entry[0]})
                else:
                    self._send(404, {"error": "not_found"})

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


class FileKeyring:
    """Factory for a keyring backend kept in a JSON file, so that a secret stored in one
    process (``login`` in the test) is seen by another (the CLI in a subprocess).

    In-process: ``keyring.set_keyring(FileKeyring.backend(path))``; in a subprocess:
    ``PYTHON_KEYRING_BACKEND=lab.FileKeyring`` (tests/ on PYTHONPATH) and
    ``NDR_TEST_KEYRING=path``.
    """

    priority = 1  # keyring reads it before instantiating the named class

    def __new__(cls):  # type: ignore[no-untyped-def]
        return cls.backend(Path(os.environ["NDR_TEST_KEYRING"]))

    @staticmethod
    def backend(path: Path):  # type: ignore[no-untyped-def]
        import json

        import keyring.backend
        import keyring.errors

        class _FileKeyring(keyring.backend.KeyringBackend):
            priority = 1  # type: ignore[assignment]

            def _load(self) -> dict[str, str]:
                try:
                    return json.loads(path.read_text())
                except FileNotFoundError:
                    return {}

            def get_password(self, service: str, username: str) -> str | None:
                return self._load().get(f"{service}\0{username}")

            def set_password(self, service: str, username: str, password: str) -> None:
                data = self._load()
                data[f"{service}\0{username}"] = password
                path.write_text(json.dumps(data))

            def delete_password(self, service: str, username: str) -> None:
                data = self._load()
                if data.pop(f"{service}\0{username}", None) is None:
                    raise keyring.errors.PasswordDeleteError("not found")
                path.write_text(json.dumps(data))

        return _FileKeyring()
