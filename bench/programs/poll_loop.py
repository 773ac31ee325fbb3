"""The poll loops of bench/core.py's figure 4 (readiness -> exec), which meshwait's gate is
compared with.

    python3 poll_loop.py URL PERIOD_SECONDS

Models the two usual alternatives with the same probe-then-sleep shape they really have:
`pilot-agent wait` (probe, sleep periodMillis=500, repeat) and the pasted shell loop
(`until curl -fs $URL; do sleep 1; done`). Once URL answers 2xx it execs `date +%s%N`, the app
whose clock the figure reads. Bounded by a deadline (exit 69 after 20 s); no proxies, ever.
"""

import os, sys, time, urllib.error, urllib.request
url, period = sys.argv[1], float(sys.argv[2])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
deadline = time.monotonic() + 20
while True:
    try:
        with opener.open(url, timeout=1) as answer:
            if 200 <= answer.status < 300:
                break
    except (urllib.error.URLError, OSError):
        pass
    if time.monotonic() > deadline:
        sys.exit(69)
    time.sleep(period)
os.execvp("date", ["date", "+%s%N"])
