"""A kubelet-like driver for the simulated pod.

Each container is a process tree in its own PID namespace (its entrypoint is PID 1, as in a real
pod) inside the pod's network namespace, with its output in a log file. The driver starts the
containers at the same time, as the kubelet does for a pod's regular containers, and deletes the
pod the way the kubelet does:

1. for every container at once: run its preStop hook (in the container's network namespace, as
   the container's user), then send SIGTERM to its PID 1;
2. the hooks and the stops share one grace period (terminationGracePeriodSeconds), counted from
   the deletion;
3. whatever still runs when the grace period ends gets SIGKILL (but never sooner than 2 s after
   its SIGTERM, as the kubelet does when a preStop hook used up the grace period).

What it does and sees (starts, exits, the deletion, hooks, signals) it marks in the pod's
recording (recording.py) as it happens.
"""

import os
import signal
import subprocess
import threading
import time

import network
import recording


MINIMUM_GRACE = 2.0


def container_env(env=None):
    """A container's environment is its manifest's `env:`, not the harness's: MESHWAIT_* settings
    of whoever runs the harness must not leak into the pod."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MESHWAIT_")}
    clean.update(env or {})
    return clean


def with_files(argv, files):
    """`argv` in a mount namespace of its own where each of `files` ({path in the container:
    file on the machine}) is bind-mounted, as the kubelet gives each container its own
    /etc/resolv.conf and /etc/hosts. The mounts end with the process."""
    if not files:
        return argv
    mounts = "".join(f"mount --bind '{source}' '{target}' && "
                     for target, source in files.items())
    return [network.tool("unshare"), "--mount", "--", "sh", "-c", mounts + 'exec "$@"', "sh",
            *argv]


class Container:
    def __init__(self, name, argv, log_path, env=None, pre_stop=None, pre_stop_uid=0,
                 files=None):
        self.name = name
        self.argv = with_files(argv, files)
        self.env = container_env(env)
        self.log_path = log_path
        self.pre_stop = pre_stop
        self.pre_stop_uid = pre_stop_uid
        self.process = None
        self.init_pid = None
        self.exited_at = None
        self.exit_code = None
        self.exited = threading.Event()
        # What deletion did to this container, for the report.
        self.pre_stop_result = None
        self.killed = False
        # The pod's recording takes the container's start and exit; a container alone records
        # nothing.
        self.mark = lambda *a, **k: None

    def start(self, netns):
        log = open(self.log_path, "ab")
        # unshare --fork: the entrypoint becomes PID 1 of a new PID namespace; --kill-child: if
        # the holder goes, so does the container.
        self.process = subprocess.Popen(
            [network.tool("unshare"), "--pid", "--fork", "--kill-child", "--", *self.argv],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self.env,
            preexec_fn=netns.enter_as(0),
        )
        log.close()
        self.mark(self.name, "start", "start")
        self.init_pid = self._find_init()
        if self.init_pid is None:
            self.process.kill()
            raise RuntimeError(f"container {self.name}: no PID 1 appeared under unshare")
        threading.Thread(target=self._wait, daemon=True).start()

    def _find_init(self):
        """The container's PID 1, as the host sees it: the unshare process's only child."""
        children = f"/proc/{self.process.pid}/task/{self.process.pid}/children"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                with open(children) as f:
                    pids = f.read().split()
                if pids:
                    return int(pids[0])
            except FileNotFoundError:
                return None
            time.sleep(0.002)
        return None

    def _wait(self):
        code = self.process.wait()
        self.exited_at = time.monotonic()
        self.exit_code = code
        self.mark(self.name, "exit", recording.exit_text(code), code=code)
        self.exited.set()

    def running(self):
        return not self.exited.is_set()

    def signal(self, sig):
        if self.init_pid and self.running():
            try:
                os.kill(self.init_pid, sig)
            except ProcessLookupError:
                pass

    def log(self):
        with open(self.log_path, errors="replace") as f:
            # util-linux's unshare complains when it re-raises a SIGKILL that ended the
            # container (SIGKILL cannot be unblocked); that line is the harness's, not the pod's.
            return "".join(line for line in f if not line.startswith("unshare: sigprocmask"))


class Pod:
    def __init__(self, net, containers, grace, record=None):
        self.net = net
        self.containers = {c.name: c for c in containers}
        self.grace = grace
        self.deleted_at = None
        self.record = record or recording.Recording("pod")
        for c in containers:
            c.mark = self.record.mark
            self.record.log(c.name, c.log_path)

    def __getitem__(self, name):
        return self.containers[name]

    def start(self, names=None):
        for name in names or self.containers:
            self.containers[name].start(self.net.pod)

    def delete(self):
        """Delete the pod; returns when every container has exited."""
        self.deleted_at = time.monotonic()
        self.record.mark("kubelet", "delete", "pod deleted", grace=self.grace)
        deadline = self.deleted_at + self.grace
        threads = [threading.Thread(target=self._stop, args=(c, deadline))
                   for c in self.containers.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _stop(self, c, deadline):
        if not c.running():
            return
        if c.pre_stop:
            c.pre_stop_result = self._run_hook(c, deadline)
        self.record.mark(c.name, "sigterm", "SIGTERM")
        c.signal(signal.SIGTERM)
        # The kubelet grants at least 2 s between SIGTERM and SIGKILL, even when a preStop hook
        # used up the grace period (minimumGracePeriodInSeconds in its container stop code).
        if not c.exited.wait(max(MINIMUM_GRACE, deadline - time.monotonic())):
            c.killed = True
            self.record.mark(c.name, "sigkill", "SIGKILL")
            c.signal(signal.SIGKILL)
            c.exited.wait(5)

    def _run_hook(self, c, deadline):
        start = time.monotonic()
        # The program by name: where the harness put it is no part of the picture.
        self.record.mark(c.name, "prestop-start", "preStop: " + " ".join(
            [os.path.basename(c.pre_stop[0]), *c.pre_stop[1:]]))
        with open(c.log_path, "ab") as log:
            log.write(f"kubelet: preStop {' '.join(c.pre_stop)}\n".encode())
            log.flush()
            hook = subprocess.Popen(c.pre_stop, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, env=c.env,
                                    preexec_fn=self.net.pod.enter_as(c.pre_stop_uid))
        try:
            code = hook.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            hook.kill()
            hook.wait()
            code = "killed at the grace period"
        self.record.mark(c.name, "prestop-end",
                         f"preStop {'exit ' if isinstance(code, int) else ''}{code}", code=code)
        return {"exit": code, "seconds": round(time.monotonic() - start, 3)}

    def kill(self):
        for c in self.containers.values():
            c.signal(signal.SIGKILL)
        for c in self.containers.values():
            if c.process:
                c.exited.wait(5)
