#!/usr/bin/python3
"""Python side of ping_bench.ts: one caller's round trips, or the plain Python echo server.

Usage: ping_client.py ping PROXY SECONDS    ice_ping (IcePy) in a loop
       ping_client.py echo PORT SECONDS     a message of an ice_ping's size to an echo server, in a loop
       ping_client.py echo-server           serves that echo on a free loopback port (printed), until killed
The loops print, as JSON, the round trips made and their p50 and p99 in microseconds.
"""
import json
import socket
import sys
import time

# The size of an ice_ping request to "Main" (Ice protocol header included).
PING_SIZE = 42


def measure(call, seconds):
    """Runs call() for `seconds`; prints the count and the p50 and p99 of its durations."""
    call()  # connected before the clock starts
    samples = []
    end = time.perf_counter() + seconds
    now = time.perf_counter()
    while now < end:
        call()
        after = time.perf_counter()
        samples.append(after - now)
        now = after
    samples.sort()
    print(json.dumps({
        "pings": len(samples),
        "p50": samples[len(samples) // 2] * 1e6,
        "p99": samples[min(len(samples) - 1, len(samples) * 99 // 100)] * 1e6,
    }))


def ping(proxy_text, seconds):
    import Ice
    with Ice.initialize() as communicator:
        measure(communicator.stringToProxy(proxy_text).ice_ping, seconds)


def echo(port, seconds):
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        message = bytes(PING_SIZE)

        def round_trip():
            connection.sendall(message)
            received = 0
            while received < PING_SIZE:
                chunk = connection.recv(65536)
                if not chunk:
                    raise ConnectionError("the echo server closed the connection")
                received += len(chunk)
        measure(round_trip, seconds)


def echo_server():
    with socket.create_server(("127.0.0.1", 0)) as server:
        print(server.getsockname()[1], flush=True)
        while True:
            connection, _ = server.accept()
            with connection:
                connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                while data := connection.recv(65536):
                    connection.sendall(data)


if sys.argv[1] == "ping":
    ping(sys.argv[2], float(sys.argv[3]))
elif sys.argv[1] == "echo":
    echo(int(sys.argv[2]), float(sys.argv[3]))
else:
    echo_server()
