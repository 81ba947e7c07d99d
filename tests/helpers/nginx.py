"""Debian's nginx as a stock reverse proxy in front of a node, for tests of
what a real proxy does to the client protocols: ``proxy_pass`` only (no
``Upgrade`` forwarding, so WebSocket cannot get through), buffering on (its
default), HTTP/1.0 to the upstream (its default). It runs in the
foreground, one process (``daemon off``, ``master_process off``), with its
prefix, configuration, pid file, logs and temporary files in a folder of
its own, and is stopped at the test's cleanup. scripts/test.sh installs it
when missing."""

import os
import subprocess
import tempfile

from .processes import free_port, wait_for_port

__all__ = ["NGINX", "start_nginx"]

NGINX = os.environ.get("PRESENCE_NGINX", "/usr/sbin/nginx")

_CONF = """\
{user}
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
        }}
    }}
}}
"""


async def start_nginx(test, upstream_port):
    """nginx on a free loopback port, proxying to ``upstream_port``;
    returns the port once it listens."""
    prefix = tempfile.mkdtemp(prefix="presence-nginx-")
    test.addCleanup(lambda: subprocess.run(["rm", "-rf", prefix], check=False))
    port = free_port()
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
        # As root (CI), nginx would switch to the user "nobody"; it stays who it is.
        f.write(_CONF.format(user="user root;" if os.geteuid() == 0 else "", prefix=prefix,
                             port=port, upstream=upstream_port))
    process = subprocess.Popen([NGINX, "-p", prefix, "-c", conf, "-e", prefix + "/error.log"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def stop():
        if process.poll() is None:
            process.terminate()
            process.communicate(timeout=30)
    test.addCleanup(stop)
    await wait_for_port(port, process)
    return port
