#!/usr/bin/python3
"""Python (IcePy) side of ping_bench.ts: one caller's ice_ping loop.

Usage: ping_client.py PROXY SECONDS
Prints, as JSON, the pings made and the p50 and p99 of their round trips in microseconds.
"""
import json
import sys
import time

import Ice

proxy_text, seconds = sys.argv[1], float(sys.argv[2])
with Ice.initialize() as communicator:
    proxy = communicator.stringToProxy(proxy_text)
    proxy.ice_ping()  # connected before the clock starts
    samples = []
    end = time.perf_counter() + seconds
    now = time.perf_counter()
    while now < end:
        proxy.ice_ping()
        after = time.perf_counter()
        samples.append(after - now)
        now = after
    samples.sort()
    print(json.dumps({
        "pings": len(samples),
        "p50": samples[len(samples) // 2] * 1e6,
        "p99": samples[min(len(samples) - 1, len(samples) * 99 // 100)] * 1e6,
    }))
