"""A Jupyter server on inherited listening sockets (systemd socket activation), for sbx-exec.

Jupyter cannot adopt a socket by itself. This adopter starts jupyter_server's ServerApp on the
sockets passed as fds 3.. with LISTEN_FDS (and LISTEN_PID naming this process), never binding or
probing a port itself: control mode holds the reserved port (8888) and hands it to this server,
which runs confined in its own context (`sbx-exec --ctx notebook --listen-fd 8888 ...`).

    sbx-exec --ctx notebook --listen-fd 8888 --listen-fd 8888v6 -- \
        /opt/sbx-jupyter/bin/python3 serve.py [--ServerApp.root_dir=/workspace ...]

The token comes from JUPYTER_TOKEN (required: a server without one would accept anybody who can
reach the port). It is taken out of the environment before any kernel starts, never written to a
file (no jpserver-PID.json, no browser-open file), and this process makes itself non-dumpable, so
code running in a kernel cannot read it from /proc/PID/environ or /proc/PID/mem. The residual risk:
a kernel runs as the same user in the same sandbox, so a cell can still kill the server (control
restarts it) and talk to the kernels; the token only protects the server from outside callers.
"""

import ctypes
import os
import socket
import sys

from jupyter_server.serverapp import ServerApp
from traitlets import default

PR_SET_DUMPABLE = 4


def inherited_sockets():
    """The listening sockets of LISTEN_FDS, if they are meant for this process."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        sys.exit("serve.py: no sockets passed (LISTEN_PID is not this process); run it under sbx-exec --listen-fd")
    count = int(os.environ.get("LISTEN_FDS", "0"))
    socks = []
    for fd in range(3, 3 + count):
        s = socket.socket(fileno=fd)
        s.setblocking(False)
        socks.append(s)
    for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    if not socks:
        sys.exit("serve.py: LISTEN_FDS passed no socket")
    return socks


class InheritedSocketServerApp(ServerApp):
    """ServerApp serving on sockets it was given instead of ones it binds."""

    sockets = []

    def _find_http_port(self):
        # Never probe a port: it is the inherited socket's.
        self.port = self.sockets[0].getsockname()[1]

    def _bind_http_server(self):
        self.http_server.add_sockets(self.sockets)

    def write_server_info_file(self):
        # jpserver-PID.json holds the token; kernels could read it.
        pass

    def remove_server_info_file(self):
        pass

    def write_browser_open_files(self):
        # They hold the token too.
        pass

    @default("cookie_secret")
    def _cookie_secret_in_memory(self):
        # Never the jupyter_cookie_secret file, from which a kernel could forge login cookies.
        return os.urandom(32)


def main():
    token = os.environ.pop("JUPYTER_TOKEN", "")
    if not token:
        sys.exit("serve.py: JUPYTER_TOKEN is not set; refusing to serve without a token")
    os.environ.pop("JUPYTER_TOKEN_FILE", None)
    # Kernels (same user) may not read this process's memory or environment.
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        sys.exit("serve.py: cannot make the server non-dumpable")
    InheritedSocketServerApp.sockets = inherited_sockets()
    host = InheritedSocketServerApp.sockets[0].getsockname()[0]
    argv = [
        f"--IdentityProvider.token={token}",
        # "" means all interfaces (remote access allowed), as the held socket is.
        "--ServerApp.ip=" + ("" if host in ("0.0.0.0", "::") else host),
        "--ServerApp.open_browser=False",
        "--ServerApp.terminals_enabled=False",
        "--ServerApp.allow_root=True",
        "--ServerApp.port_retries=0",
    ] + sys.argv[1:]
    InheritedSocketServerApp.launch_instance(argv=argv)


if __name__ == "__main__":
    main()
