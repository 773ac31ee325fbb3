"""The app: counts every SIGRTMIN+1 it receives (blocked and dequeued one at a time, so none merge
here) and prints the count once none has come for 1.5 s."""
import signal
import sys

rt = signal.SIGRTMIN + 1
signal.pthread_sigmask(signal.SIG_BLOCK, [rt])
print("ready", flush=True)
n = 0
while signal.sigtimedwait([rt], 1.5 if n else 30) is not None:
    n += 1
print(n, file=sys.stderr, flush=True)
