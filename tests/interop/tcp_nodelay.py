#!/usr/bin/python3
"""Whether another process's TCP sockets have TCP_NODELAY, read from outside (needs root: pidfd_getfd).

Usage: tcp_nodelay.py PID PORT
Prints, as JSON, {"outgoing": [...], "incoming": [...]}: one 0/1 per socket of PID connected to PORT
(outgoing) or accepted on PORT (incoming).
"""
import ctypes
import json
import os
import socket
import sys

SYS_PIDFD_OPEN, SYS_PIDFD_GETFD = 434, 438


def tcp_ports(pid):
    """inode -> (local port, remote port) of PID's IPv4 and IPv6 TCP sockets."""
    ports = {}
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}") as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                local, remote, inode = fields[1], fields[2], int(fields[9])
                ports[inode] = (int(local.split(":")[1], 16), int(remote.split(":")[1], 16))
    return ports


pid, port = int(sys.argv[1]), int(sys.argv[2])
libc = ctypes.CDLL(None, use_errno=True)
pidfd = libc.syscall(SYS_PIDFD_OPEN, pid, 0)
if pidfd < 0:
    sys.exit(f"pidfd_open: {os.strerror(ctypes.get_errno())}")
ports = tcp_ports(pid)
found = {"outgoing": [], "incoming": []}
for name in os.listdir(f"/proc/{pid}/fd"):
    try:
        target = os.readlink(f"/proc/{pid}/fd/{name}")
    except OSError:
        continue
    if not target.startswith("socket:["):
        continue
    local, remote = ports.get(int(target[8:-1]), (None, None))
    side = "outgoing" if remote == port else "incoming" if local == port and remote != 0 else None
    if side is None:
        continue
    fd = libc.syscall(SYS_PIDFD_GETFD, pidfd, int(name), 0)
    if fd < 0:
        sys.exit(f"pidfd_getfd: {os.strerror(ctypes.get_errno())}")
    with socket.socket(fileno=fd) as copy:
        found[side].append(copy.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) and 1)
print(json.dumps(found))
