"""The pod's network: a network namespace for the pod, one for the rest of the cluster, a veth pair
between them, and the sidecar's traffic capture as istio-init or linkerd-init would install it.

Namespaces are held by `unshare --net sleep` processes that die with the harness (parent-death
signal), so nothing is left behind in /run/netns even if the harness is killed.
"""

import ctypes
import os
import shutil
import signal
import subprocess
import time

CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
POD_IP = "10.89.0.2"
CLUSTER_IP = "10.89.0.1"

_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent():
    """For preexec_fn: the child is SIGKILLed when the harness goes, however it goes."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def become(uid):
    """Run as `uid` (user and group, no supplementary groups) from here on. A UID change clears
    the parent-death signal, so it is set again: a harness killed with -9 must leave nothing of
    this process behind."""
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    die_with_parent()


def tool(name):
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if not path:
        raise SystemExit(f"pod: `{name}` is needed (Debian package: {PACKAGES.get(name, name)})")
    return path


PACKAGES = {"iptables-restore": "iptables", "iptables-save": "iptables", "ip": "iproute2",
            "unshare": "util-linux"}


class Namespace:
    """A network namespace kept alive by a sleeping holder process."""

    def __init__(self, name):
        self.name = name
        self.holder = subprocess.Popen(
            [tool("unshare"), "--net", "--", "sleep", "infinity"], preexec_fn=die_with_parent
        )
        # The holder is in its new namespace once unshare has unshared. Until then its link
        # names the harness's own namespace, and everything meant for the pod (iptables rules
        # above all) would land on the machine: wait for the change, and give up if it never
        # comes.
        path = f"/proc/{self.holder.pid}/ns/net"
        own = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + 5
        while os.readlink(path) == own:
            if time.monotonic() > deadline or self.holder.poll() is not None:
                self.close()
                raise RuntimeError(f"{name}: `unshare --net` did not make a network namespace")
            time.sleep(0.001)
        self.path = path

    def enter(self):
        """For preexec_fn: move the child into this namespace."""
        fd = os.open(self.path, os.O_RDONLY)
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        os.close(fd)

    def enter_as(self, uid):
        """A preexec_fn: into this namespace, then as `uid` (0: stay root)."""

        def enter():
            self.enter()
            if uid:
                become(uid)
            else:
                die_with_parent()

        return enter

    def run(self, argv, stdin=None):
        result = subprocess.run(
            argv, input=stdin, preexec_fn=self.enter, capture_output=True, text=True
        )
        if result.returncode != 0:
            raise RuntimeError(f"{self.name}: {' '.join(argv)}: {result.stderr.strip()}")
        return result.stdout

    def close(self):
        self.holder.kill()
        self.holder.wait()


# The capture rules, in iptables-restore form. Istio's are istio-init's (ISTIO_* chains, as
# `iptables-save` shows them in an injected pod), trimmed to TCP and IPv4: inbound TCP goes to
# 15006 except the sidecar's own ports; outbound TCP goes to 15001 except the proxy's own traffic
# (UID and GID 1337) and loopback, with istio-init's rule that sends the proxy's loopback calls to
# the pod's own IP back through the inbound path.
ISTIO_RULES = """*nat
:ISTIO_INBOUND - [0:0]
:ISTIO_IN_REDIRECT - [0:0]
:ISTIO_OUTPUT - [0:0]
:ISTIO_REDIRECT - [0:0]
-A PREROUTING -p tcp -j ISTIO_INBOUND
-A OUTPUT -p tcp -j ISTIO_OUTPUT
-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15090 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15021 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15020 -j RETURN
-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A ISTIO_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN
-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
-A ISTIO_OUTPUT -j ISTIO_REDIRECT
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
COMMIT
"""

# linkerd-init's: inbound to 4143 except the proxy's admin and tap ports, outbound to 4140 except
# the proxy's own traffic (UID 2102) and loopback.
LINKERD_RULES = """*nat
:PROXY_INIT_REDIRECT - [0:0]
:PROXY_INIT_OUTPUT - [0:0]
-A PREROUTING -j PROXY_INIT_REDIRECT
-A OUTPUT -j PROXY_INIT_OUTPUT
-A PROXY_INIT_REDIRECT -p tcp -m multiport --dports 4190,4191,4567,4568 -j RETURN
-A PROXY_INIT_REDIRECT -p tcp -j REDIRECT --to-ports 4143
-A PROXY_INIT_OUTPUT -m owner --uid-owner 2102 -j RETURN
-A PROXY_INIT_OUTPUT -o lo -j RETURN
-A PROXY_INIT_OUTPUT -p tcp -j REDIRECT --to-ports 4140
COMMIT
"""

# Ambient mode's in-pod rules, as istio-cni installs them for ztunnel, reduced to what the app's
# container can tell apart: inbound TCP goes to ztunnel's 15006 except HBONE (15008), outbound TCP
# to its 15001 except loopback and ztunnel's own connections (mark 0x539). (istio-cni uses
# TPROXY for inbound and keeps the caller's address; REDIRECT gives the same sockets to the app.)
AMBIENT_RULES = """*nat
:ISTIO_PRERT - [0:0]
:ISTIO_OUTPUT - [0:0]
-A PREROUTING -j ISTIO_PRERT
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_PRERT -p tcp --dport 15008 -j RETURN
-A ISTIO_PRERT -p tcp -j REDIRECT --to-ports 15006
-A ISTIO_OUTPUT -m mark --mark 0x539/0xfff -j RETURN
-A ISTIO_OUTPUT -o lo -j RETURN
-A ISTIO_OUTPUT -p tcp -j REDIRECT --to-ports 15001
COMMIT
"""

RULES = {"istio": ISTIO_RULES, "linkerd": LINKERD_RULES, "ambient": AMBIENT_RULES}


class PodNetwork:
    """The pod's namespace (10.89.0.2) and the cluster's (10.89.0.1), joined by a veth pair."""

    def __init__(self, layout):
        self.pod = Namespace("pod")
        self.cluster = Namespace("cluster")
        ip = tool("ip")
        tag = os.getpid() % 100000
        pod_if, cluster_if = f"mwp{tag}", f"mwc{tag}"
        subprocess.run(
            [ip, "link", "add", pod_if, "netns", str(self.pod.holder.pid), "type", "veth",
             "peer", "name", cluster_if, "netns", str(self.cluster.holder.pid)],
            check=True,
        )
        for ns, dev, addr in ((self.pod, pod_if, POD_IP), (self.cluster, cluster_if, CLUSTER_IP)):
            ns.run([ip, "link", "set", "lo", "up"])
            ns.run([ip, "addr", "add", f"{addr}/24", "dev", dev])
            ns.run([ip, "link", "set", dev, "up"])
        self.pod.run([tool("iptables-restore")], stdin=RULES[layout])

    def close(self):
        self.pod.close()
        self.cluster.close()
