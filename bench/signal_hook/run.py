"""Sends a burst of real-time signals (SIGRTMIN+1, which the kernel queues one instance each) to
three inits, signal-hook's iterator, sigwaitinfo, and meshwait, and prints how many reached the
app behind each. Builds the two forwarders; meshwait is taken from target/release/meshwait (or
--meshwait PATH). Usage: python3 bench/signal_hook/run.py [--burst N] [--rounds N]"""
import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(os.path.dirname(here))


def one(cmd, burst, ends_on_usr1):
    with tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(cmd + [sys.executable, os.path.join(here, "count.py")],
                             stdout=subprocess.PIPE, stderr=err, text=True)
        p.stdout.readline()  # the app has blocked the signal: nothing sent now is lost to it
        rt = signal.SIGRTMIN + 1
        for _ in range(burst):
            os.kill(p.pid, rt)
        if ends_on_usr1:
            time.sleep(2.0)  # the app's quiet period, then the forwarder's end
            os.kill(p.pid, signal.SIGUSR1)
        p.wait(timeout=60)
        err.seek(0)
        return int(err.read().split()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--burst", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--meshwait", default=os.path.join(root, "target", "release", "meshwait"))
    opts = ap.parse_args()
    env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(root, "target", "forwarders"))
    subprocess.run(["cargo", "build", "--quiet", "--release", "--manifest-path",
                    os.path.join(here, "Cargo.toml")], check=True, env=env)
    fwd = os.path.join(root, "target", "forwarders", "release", "forwarders")
    inits = [("signal-hook iterator", [fwd, "hook"], True),
             ("sigwaitinfo", [fwd, "wait"], True),
             ("meshwait --mesh none", [opts.meshwait, "--mesh", "none", "--log-level", "off", "--"], False)]
    print(f"{opts.burst} x SIGRTMIN+1 sent in a burst to the init; received by the app, {opts.rounds} rounds:")
    for name, cmd, usr1 in inits:
        got = [one(cmd, opts.burst, usr1) for _ in range(opts.rounds)]
        print(f"  {name:22} {' '.join(f'{g:5}' for g in got)}")


if __name__ == "__main__":
    main()
