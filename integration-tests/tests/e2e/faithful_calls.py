# The differential probe of `faithful_calls.rs`: each case makes a fixed sequence of socket
# calls and records what every one of them returned (the value or the errno's name), the names
# the kernel reports (`getsockname`, `getpeername`, `SO_ERROR`) and what the socket can do
# afterwards (send, receive, accept). The test runs it unconfined and confined and compares
# the records case by case: a confined program must see what the kernel gives it.
#
# Usage: python3 faithful_calls.py CASE... (no case: every case). Prints one JSON object,
# {"cases": {CASE: [[STEP, RESULT], ...]}}. Ports are printed by role ("L1", "closed"...,
# "eph" for one the kernel picked), pids as "self", so that two runs compare equal.
#
# Only loopback is reached; 127.0.0.99 is the address the test's policy denies, used only
# where the kernel answers before it reads the address.

import ctypes
import errno
import json
import mmap
import os
import select
import signal
import socket
import struct
import sys
import tempfile
import time

libc = ctypes.CDLL(None, use_errno=True)
for name in ("connect", "bind"):
    getattr(libc, name).argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
libc.sendto.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                        ctypes.c_void_p, ctypes.c_int]
libc.sendto.restype = ctypes.c_ssize_t
libc.sendmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
libc.sendmsg.restype = ctypes.c_ssize_t
libc.sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]

DENIED = "127.0.0.99"
IP_PKTINFO = 8
PORTS = {}
PIPES = [0]
KEEP = []


def on_sigpipe(_sig, _frame):
    PIPES[0] += 1


signal.signal(signal.SIGPIPE, on_sigpipe)


def name_of(e):
    return errno.errorcode.get(e, str(e))


def norm(v):
    if isinstance(v, tuple) and len(v) >= 2 and isinstance(v[1], int):
        port = v[1]
        return [v[0], PORTS.get(port, 0 if port == 0 else "eph")]
    if isinstance(v, bytes):
        return v.decode("latin-1")
    if isinstance(v, (list, tuple)):
        return [norm(x) for x in v]
    return v


def res(f, *a, **k):
    """The result of f(*a): its value, normalised, or "E:ERRNO"."""
    try:
        return norm(f(*a, **k))
    except OSError as e:
        return "E:" + name_of(e.errno)


def raw(rv):
    """The result of a libc call made through ctypes."""
    if rv == -1:
        return "E:" + name_of(ctypes.get_errno())
    return rv


def settle():
    # Lets a signal the last call raised reach its Python handler.
    for _ in range(3):
        time.sleep(0.002)


def piped(f, *a, **k):
    """f's result and how many SIGPIPEs it raised."""
    before = PIPES[0]
    r = res(f, *a, **k)
    settle()
    return [r, PIPES[0] - before]


def sin(ip, port, family=socket.AF_INET):
    return struct.pack("=HH4s8x", family, socket.htons(port), socket.inet_aton(ip))


def sin6(ip, port, family=socket.AF_INET6):
    return struct.pack("=HHI16sI", family, socket.htons(port), 0,
                       socket.inet_pton(socket.AF_INET6, ip), 0)


def buf(b):
    if b is None:
        return None
    cb = ctypes.create_string_buffer(b, len(b))
    KEEP.append(cb)
    return ctypes.addressof(cb)


def c_connect(fd, b, n=None):
    ctypes.set_errno(0)
    return raw(libc.connect(fd, buf(b), len(b) if n is None else n))


def c_bind(fd, b, n=None):
    ctypes.set_errno(0)
    return raw(libc.bind(fd, buf(b), len(b) if n is None else n))


def c_sendto(fd, data, flags, b, n=None):
    ctypes.set_errno(0)
    return raw(libc.sendto(fd, buf(data), len(data), flags, buf(b),
                           (len(b) if b is not None else 0) if n is None else n))


def cmsg(level, kind, data):
    return struct.pack("=QiI", 16 + len(data), level, kind) + data + b"\0" * ((-len(data)) % 8)


def msghdr(name=None, namelen=None, data=b"x", control=b"", iovlen=None, name_ptr=None,
           iov_ptr=None, controllen=None):
    iov = struct.pack("=QQ", buf(data) or 0, len(data))
    np = name_ptr if name_ptr is not None else (buf(name) or 0)
    nl = namelen if namelen is not None else (len(name) if name is not None else 0)
    cp = buf(control) if control else 0
    cl = controllen if controllen is not None else len(control)
    ip = iov_ptr if iov_ptr is not None else buf(iov)
    return struct.pack("=QI4xQQQQi4x", np, nl, ip, 1 if iovlen is None else iovlen, cp, cl, 0)


def c_sendmsg(fd, hdr, flags=0):
    ctypes.set_errno(0)
    return raw(libc.sendmsg(fd, buf(hdr), flags))


def c_sendmsg_piped(fd, hdr, flags=0):
    before = PIPES[0]
    r = c_sendmsg(fd, hdr, flags)
    settle()
    return [r, PIPES[0] - before]


def tcp_listener(role, backlog=16, family=socket.AF_INET, ip="127.0.0.1"):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.bind((ip, 0))
    s.listen(backlog)
    PORTS[s.getsockname()[1]] = role
    return s


def udp_receiver(role, ip="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ip, 0))
    s.settimeout(1)
    PORTS[s.getsockname()[1]] = role
    return s


def closed_port(role="closed"):
    # Bound, not listening: a SYN gets a reset.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    PORTS[s.getsockname()[1]] = role
    KEEP.append(s)
    return s.getsockname()


def cx(s, addr):
    """connect_ex: 0 or "E:ERRNO"."""
    try:
        r = s.connect_ex(addr)
    except OSError as e:
        r = e.errno
    return "E:" + name_of(r) if r else 0


def writable(s, t=5):
    return bool(select.select([], [s], [], t)[1])


def so_error(s):
    e = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    return "E:" + name_of(e) if e else 0


def accepted(lst, t=5):
    """What an accept on `lst` gives within t seconds: the peer's name and 1 byte, if any."""
    lst.settimeout(t)
    try:
        c, a = lst.accept()
    except OSError as e:
        return "E:" + name_of(e.errno)
    except socket.timeout:
        return "timeout"
    c.settimeout(2)
    try:
        data = c.recv(16)
    except (OSError, socket.timeout):
        data = b"?"
    c.close()
    return [norm(a), norm(data)]


def received(u):
    try:
        data, src = u.recvfrom(1 << 17)
    except socket.timeout:
        return "timeout"
    return [len(data), norm(src)]


def names(s):
    return [res(s.getsockname), res(s.getpeername)]


# ---- cases ---------------------------------------------------------------------------------

CASES = {}


def case(f):
    CASES[f.__name__] = f
    return f


@case
def nonblocking_refused_so_error_then_retry(out):
    lst = tcp_listener("L1")
    closed = closed_port()
    s = socket.socket()
    s.setblocking(False)
    out.append(["connect closed", cx(s, closed)])
    out.append(["writable", writable(s)])
    out.append(["SO_ERROR", so_error(s)])
    out.append(["SO_ERROR again", so_error(s)])
    out.append(["names", names(s)])
    # SO_ERROR consumed the error: the kernel's next connect finds the socket closed and
    # answers ECONNABORTED, then the one after starts a new connection.
    out.append(["connect closed again", cx(s, closed)])
    out.append(["connect L1", cx(s, lst.getsockname())])
    out.append(["writable", writable(s)])
    out.append(["SO_ERROR", so_error(s)])
    out.append(["connect L1 again", cx(s, lst.getsockname())])
    out.append(["connect L1 third", cx(s, lst.getsockname())])
    out.append(["names", names(s)])
    out.append(["sendmsg", res(s.sendmsg, [b"a"])])
    out.append(["accept", accepted(lst)])


@case
def nonblocking_refused_retry_without_so_error(out):
    closed = closed_port()
    lst = tcp_listener("L1")
    s = socket.socket()
    s.setblocking(False)
    out.append(["connect closed", cx(s, closed)])
    out.append(["writable", writable(s)])
    # The error is still pending: connect reports it (and clears it).
    out.append(["connect closed again", cx(s, closed)])
    out.append(["SO_ERROR", so_error(s)])
    out.append(["connect L1", cx(s, lst.getsockname())])
    out.append(["writable", writable(s)])
    out.append(["SO_ERROR", so_error(s)])
    out.append(["names", names(s)])


@case
def nonblocking_refused_then_denied_address(out):
    # A connect on a socket whose connect failed: the kernel reports the failure (the
    # pending error, then ECONNABORTED) before it reads the new address.
    closed = closed_port()
    s = socket.socket()
    s.setblocking(False)
    out.append(["connect closed", cx(s, closed)])
    out.append(["writable", writable(s)])
    out.append(["connect denied (error pending)", cx(s, (DENIED, closed[1]))])
    t = socket.socket()
    t.setblocking(False)
    out.append(["connect closed", cx(t, closed)])
    out.append(["writable", writable(t)])
    out.append(["SO_ERROR", so_error(t)])
    out.append(["connect denied (error read)", cx(t, (DENIED, closed[1]))])
    out.append(["names", names(t)])


@case
def blocking_refused_then_retry(out):
    closed = closed_port()
    lst = tcp_listener("L1")
    s = socket.socket()
    out.append(["connect closed", res(s.connect, closed)])
    out.append(["SO_ERROR", so_error(s)])
    out.append(["names", names(s)])
    out.append(["connect L1", res(s.connect, lst.getsockname())])
    out.append(["names", names(s)])
    out.append(["sendmsg", res(s.sendmsg, [b"b"])])
    out.append(["accept", accepted(lst)])


@case
def ealready_before_the_address(out):
    # A listener whose accept queue is full drops SYNs: the connect stays in progress.
    lst = tcp_listener("full", backlog=0)
    first = socket.socket()
    first.connect(lst.getsockname())
    KEEP.append(first)
    filler = socket.socket()
    filler.setblocking(False)
    filler.connect_ex(lst.getsockname())
    KEEP.append(filler)
    time.sleep(0.05)
    s = socket.socket()
    s.setblocking(False)
    out.append(["connect", cx(s, lst.getsockname())])
    out.append(["connect again", cx(s, lst.getsockname())])
    out.append(["connect denied", cx(s, (DENIED, 9))])
    out.append(["connect short", c_connect(s.fileno(), sin("127.0.0.1", 9)[:8])])
    out.append(["connect AF_INET6", c_connect(s.fileno(), sin6("::1", 9))])
    out.append(["connect len 1", c_connect(s.fileno(), b"\2")])
    out.append(["SO_ERROR", so_error(s)])
    out.append(["names", names(s)])


@case
def eisconn_before_the_address(out):
    lst = tcp_listener("L1")
    other = tcp_listener("L2")
    s = socket.socket()
    out.append(["connect", res(s.connect, lst.getsockname())])
    out.append(["connect again", cx(s, lst.getsockname())])
    out.append(["connect L2", cx(s, other.getsockname())])
    out.append(["connect denied", cx(s, (DENIED, 9))])
    out.append(["connect short", c_connect(s.fileno(), sin("127.0.0.1", 9)[:8])])
    out.append(["connect AF_INET6", c_connect(s.fileno(), sin6("::1", 9))])
    out.append(["connect family 7", c_connect(s.fileno(), sin("127.0.0.1", 9, 7))])
    out.append(["connect len 1", c_connect(s.fileno(), b"\2")])
    out.append(["connect NULL", c_connect(s.fileno(), None, 16)])
    out.append(["names", names(s)])
    out.append(["sendmsg", res(s.sendmsg, [b"c"])])
    out.append(["accept", accepted(lst)])
    out.append(["disconnect", c_connect(s.fileno(), struct.pack("=H14x", 0))])
    out.append(["names", names(s)])
    out.append(["connect L2", cx(s, other.getsockname())])
    out.append(["names", names(s)])


@case
def eisconn_on_a_listener(out):
    lst = tcp_listener("L1")
    s = tcp_listener("L2")
    out.append(["connect L1", cx(s, lst.getsockname())])
    out.append(["connect denied", cx(s, (DENIED, 9))])
    out.append(["connect short", c_connect(s.fileno(), sin("127.0.0.1", 9)[:8])])
    out.append(["names", names(s)])


@case
def eisconn_ipv6(out):
    lst = tcp_listener("L6", family=socket.AF_INET6, ip="::1")
    s = socket.socket(socket.AF_INET6)
    out.append(["connect", res(s.connect, lst.getsockname())])
    out.append(["connect AF_INET", c_connect(s.fileno(), sin("127.0.0.1", 9))])
    out.append(["connect short", c_connect(s.fileno(), sin6("::1", 9)[:20])])
    out.append(["connect mapped denied", cx(s, ("::ffff:" + DENIED, 9))])
    out.append(["names", names(s)])


@case
def completed_connect_seen_by_connect(out):
    # A non-blocking connect that completed: the next connect says 0 whatever the address
    # (the kernel does not read it), the one after EISCONN.
    lst = tcp_listener("L1")
    s = socket.socket()
    s.setblocking(False)
    out.append(["connect", cx(s, lst.getsockname())])
    out.append(["writable", writable(s)])
    out.append(["connect denied", cx(s, (DENIED, 9))])
    out.append(["connect denied again", cx(s, (DENIED, 9))])
    out.append(["names", names(s)])
    t = socket.socket()
    t.setblocking(False)
    out.append(["connect", cx(t, lst.getsockname())])
    out.append(["writable", writable(t)])
    out.append(["connect short", c_connect(t.fileno(), sin("127.0.0.1", 9)[:8])])
    out.append(["names", names(t)])


@case
def udp_connect_and_disconnect(out):
    rx = udp_receiver("U1")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out.append(["connect", res(s.connect, rx.getsockname())])
    out.append(["names", names(s)])
    out.append(["sendmsg", res(s.sendmsg, [b"d"])])
    out.append(["received", received(rx)])
    out.append(["disconnect len 1", c_connect(s.fileno(), b"\0")])
    out.append(["disconnect", c_connect(s.fileno(), struct.pack("=H", 0))])
    out.append(["names", names(s)])
    out.append(["send", res(s.send, b"e")])
    out.append(["sendmsg", res(s.sendmsg, [b"e"])])
    out.append(["names", names(s)])
    out.append(["sendto", res(s.sendto, b"f", rx.getsockname())])
    out.append(["received", received(rx)])
    out.append(["disconnect 16", c_connect(s.fileno(), struct.pack("=H14x", 0))])
    out.append(["names", names(s)])


@case
def udp_bad_connect_autobinds(out):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out.append(["connect short", c_connect(s.fileno(), sin("127.0.0.1", 9)[:8])])
    out.append(["names", names(s)])
    t = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out.append(["connect AF_INET6", c_connect(t.fileno(), sin6("::1", 9))])
    out.append(["names", names(t)])
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out.append(["connect len 1", c_connect(u.fileno(), b"\2")])
    out.append(["names", names(u)])


@case
def udp_bad_send_autobinds(out):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out.append(["sendto port 0", res(s.sendto, b"g", ("127.0.0.1", 0))])
    out.append(["names", names(s)])
    t = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out.append(["sendto AF_INET6", c_sendto(t.fileno(), b"g", 0, sin6("::1", 9))])
    out.append(["names", names(t)])
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out.append(["sendmsg no name", res(u.sendmsg, [b"g"])])
    out.append(["names", names(u)])


@case
def udp_send_names(out):
    rx = udp_receiver("U1")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out.append(["sendto", res(s.sendto, b"h", rx.getsockname())])
    out.append(["received", received(rx)])
    out.append(["names", names(s)])


@case
def msgsize_before_the_address(out):
    rx = udp_receiver("U1")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    big = b"x" * 70000
    out.append(["sendto 70000", res(s.sendto, big, rx.getsockname())])
    out.append(["sendto 70000 port 0", res(s.sendto, big, ("127.0.0.1", 0))])
    out.append(["sendto 70000 denied", res(s.sendto, big, (DENIED, 9))])
    out.append(["sendto 65508", res(s.sendto, big[:65508], rx.getsockname())])
    out.append(["sendto 65507", res(s.sendto, big[:65507], rx.getsockname())])
    out.append(["received", received(rx)])


@case
def unix_dgram_large(out):
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    out.append(["sendmsg 200000", res(a.sendmsg, [b"y" * 200000])])
    out.append(["sendmsg 300000", res(a.sendmsg, [b"y" * 300000])])
    out.append(["sendmsg 500000", res(a.sendmsg, [b"y" * 500000])])


@case
def epipe_and_sigpipe(out):
    lst = tcp_listener("L1")
    s = socket.socket()
    s.connect(lst.getsockname())
    s.shutdown(socket.SHUT_WR)
    out.append(["send", piped(s.send, b"i")])
    out.append(["sendmsg", piped(s.sendmsg, [b"i"])])
    out.append(["sendmsg NOSIGNAL", piped(s.sendmsg, [b"i"], [], socket.MSG_NOSIGNAL)])
    out.append(["sendto named", piped(s.sendto, b"i", lst.getsockname())])
    out.append(["sendto named NOSIGNAL",
                piped(s.sendto, b"i", socket.MSG_NOSIGNAL, lst.getsockname())])
    fresh = socket.socket()
    out.append(["unconnected sendmsg", piped(fresh.sendmsg, [b"i"])])
    out.append(["unconnected sendto", piped(fresh.sendto, b"i", lst.getsockname())])
    out.append(["unconnected sendmsg NOSIGNAL",
                piped(fresh.sendmsg, [b"i"], [], socket.MSG_NOSIGNAL)])


@case
def unix_epipe_and_sigpipe(out):
    for kind, label in ((socket.SOCK_STREAM, "stream"), (socket.SOCK_SEQPACKET, "seqpacket"),
                        (socket.SOCK_DGRAM, "dgram")):
        a, b = socket.socketpair(socket.AF_UNIX, kind)
        a.shutdown(socket.SHUT_WR)
        out.append([label + " sendmsg", piped(a.sendmsg, [b"j"])])
        out.append([label + " sendmsg NOSIGNAL", piped(a.sendmsg, [b"j"], [], socket.MSG_NOSIGNAL)])
        c, d = socket.socketpair(socket.AF_UNIX, kind)
        d.close()
        out.append([label + " peer closed sendmsg", piped(c.sendmsg, [b"j"])])
        fresh = socket.socket(socket.AF_UNIX, kind)
        out.append([label + " unconnected sendmsg", piped(fresh.sendmsg, [b"j"])])


@case
def udp_shutdown(out):
    rx = udp_receiver("U1")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(rx.getsockname())
    out.append(["shutdown", res(s.shutdown, socket.SHUT_WR)])
    out.append(["sendmsg", piped(s.sendmsg, [b"k"])])
    out.append(["sendto", piped(s.sendto, b"k", rx.getsockname())])


@case
def enotconn_and_edestaddrreq(out):
    s = socket.socket()
    out.append(["getpeername", res(s.getpeername)])
    u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    out.append(["unix stream sendmsg", piped(u.sendmsg, [b"l"])])
    d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    out.append(["unix dgram sendmsg", piped(d.sendmsg, [b"l"])])
    q = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out.append(["udp sendmsg", piped(q.sendmsg, [b"l"])])


@case
def sendmsg_names(out):
    rx = udp_receiver("U1")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fd = s.fileno()
    dest = sin("127.0.0.1", rx.getsockname()[1])
    out.append(["NULL name, length 16", c_sendmsg(fd, msghdr(name_ptr=0, namelen=16))])
    out.append(["name, length 0", c_sendmsg(fd, msghdr(name=dest, namelen=0))])
    out.append(["name, length -1", c_sendmsg(fd, msghdr(name=dest, namelen=0xffffffff))])
    out.append(["name, length 200", c_sendmsg(fd, msghdr(name=dest, namelen=200))])
    out.append(["bad name pointer", c_sendmsg(fd, msghdr(name_ptr=8, namelen=16))])
    out.append(["sendto length 0", c_sendto(fd, b"m", 0, dest, 0)])
    out.append(["sendto NULL", c_sendto(fd, b"m", 0, None, 16)])
    out.append(["good", c_sendmsg(fd, msghdr(name=dest))])
    out.append(["received", received(rx)])
    out.append(["iovlen 1025", c_sendmsg(fd, msghdr(name=dest, iovlen=1025))])
    out.append(["bad iov pointer", c_sendmsg(fd, msghdr(name=dest, iov_ptr=8))])
    out.append(["controllen huge", c_sendmsg(fd, msghdr(name=dest, control=b"\0" * 16,
                                                       controllen=1 << 40))])
    out.append(["control too short for a header", c_sendmsg(fd, msghdr(name=dest,
                                                                       control=b"\0" * 8))])
    out.append(["received", received(rx)])
    out.append(["bad cmsg_len", c_sendmsg(fd, msghdr(name=dest,
                                                     control=struct.pack("=QiI", 8, 0, 0)))])
    out.append(["bad cmsg_len, bad address",
                c_sendmsg(fd, msghdr(name=sin6("::1", 9), control=struct.pack("=QiI", 8, 0, 0)))])
    out.append(["names", names(s)])


@case
def sendmmsg_partial(out):
    rx = udp_receiver("U1")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fd = s.fileno()
    dest = sin("127.0.0.1", rx.getsockname()[1])
    bad = sin("127.0.0.1", 0)

    def vector(hdrs):
        raw_vec = b"".join(h + struct.pack("=I4x", 0xdead) for h in hdrs)
        b = ctypes.create_string_buffer(raw_vec, len(raw_vec))
        KEEP.append(b)
        return b

    def lens(b, n):
        return [struct.unpack_from("=I", b, i * 64 + 56)[0] for i in range(n)]

    v = vector([msghdr(name=dest, data=b"n1"), msghdr(name=dest, data=b"n22"),
                msghdr(name=bad, data=b"n3")])
    ctypes.set_errno(0)
    out.append(["good, good, port 0", raw(libc.sendmmsg(fd, ctypes.addressof(v), 3, 0))])
    out.append(["msg_len", lens(v, 3)])
    v = vector([msghdr(name=bad), msghdr(name=dest)])
    ctypes.set_errno(0)
    out.append(["port 0 first", raw(libc.sendmmsg(fd, ctypes.addressof(v), 2, 0))])
    out.append(["msg_len", lens(v, 2)])
    ctypes.set_errno(0)
    out.append(["vlen 0", raw(libc.sendmmsg(fd, ctypes.addressof(v), 0, 0))])
    ctypes.set_errno(0)
    out.append(["NULL vector", raw(libc.sendmmsg(fd, None, 2, 0))])
    # The third entry lies on a page the program cannot read.
    m = mmap.mmap(-1, 8192)
    base = ctypes.addressof(ctypes.c_char.from_buffer(m))
    entries = b"".join(msghdr(name=dest, data=b"p%d" % i) + struct.pack("=I4x", 0)
                       for i in range(2))
    at = base + 4096 - len(entries)
    ctypes.memmove(at, entries, len(entries))
    libc.mprotect(base + 4096, 4096, 0)
    ctypes.set_errno(0)
    out.append(["two, then unreadable", raw(libc.sendmmsg(fd, at, 3, 0))])
    out.append(["msg_len", [struct.unpack_from("=I", ctypes.string_at(at, len(entries)),
                                               i * 64 + 56)[0] for i in range(2)]])
    got = []
    for _ in range(5):
        got.append(received(rx))
    out.append(["received", got])


def rights(fds):
    return cmsg(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("=%di" % len(fds), *fds))


def recv_fds(b):
    b.settimeout(1)
    try:
        data, anc, flags, _ = b.recvmsg(64, socket.CMSG_SPACE(64 * 4))
    except (OSError, socket.timeout) as e:
        return "E:" + (name_of(e.errno) if getattr(e, "errno", None) else "timeout")
    fds = []
    for level, kind, payload in anc:
        if (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS):
            n = len(payload) // 4
            fds += list(struct.unpack("=%di" % n, payload[:n * 4]))
    inodes = [os.fstat(f).st_ino for f in fds]
    for f in fds:
        os.close(f)
    return [norm(data), len(fds), inodes]


@case
def scm_rights_unix(out):
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    r, w = os.pipe()
    ino = os.fstat(r).st_ino
    out.append(["pipe inode", "known"])
    fd = a.fileno()
    out.append(["one fd", c_sendmsg(fd, msghdr(data=b"q1", control=rights([r])))])
    got = recv_fds(b)
    out.append(["received", [got[0], got[1], [i == ino for i in got[2]]]
                if isinstance(got, list) else got])
    out.append(["bad fd", c_sendmsg(fd, msghdr(data=b"q2", control=rights([987])))])
    out.append(["fd -1", c_sendmsg(fd, msghdr(data=b"q3", control=rights([-1])))])
    out.append(["empty block", c_sendmsg(fd, msghdr(data=b"q4", control=rights([])))])
    out.append(["received", recv_fds(b)])
    partial = struct.pack("=QiI", 19, socket.SOL_SOCKET, socket.SCM_RIGHTS) + b"\1\0\0\0\0"
    out.append(["3-byte block", c_sendmsg(fd, msghdr(data=b"q5", control=partial))])
    out.append(["received", recv_fds(b)])
    out.append(["empty block, then one fd",
                c_sendmsg(fd, msghdr(data=b"q6", control=rights([]) + rights([r])))])
    got = recv_fds(b)
    out.append(["received", [got[0], got[1]] if isinstance(got, list) else got])
    out.append(["254 fds", c_sendmsg(fd, msghdr(data=b"q7", control=rights([r] * 254)))])
    out.append(["200 + 100 fds",
                c_sendmsg(fd, msghdr(data=b"q8", control=rights([r] * 200) + rights([r] * 100)))])
    ip_ttl = cmsg(socket.IPPROTO_IP, socket.IP_TTL, struct.pack("=i", 9))
    out.append(["IP_TTL on unix", c_sendmsg(fd, msghdr(data=b"q9", control=ip_ttl))])
    pktinfo = cmsg(socket.IPPROTO_IP, IP_PKTINFO, struct.pack("=i4s4s", 0,
                   socket.inet_aton("127.0.0.1"), socket.inet_aton("0.0.0.0")))
    out.append(["IP_PKTINFO on unix", c_sendmsg(fd, msghdr(data=b"qa", control=pktinfo))])
    level_9 = cmsg(9, 1, b"\0" * 4)
    out.append(["level 9 on unix", c_sendmsg(fd, msghdr(data=b"qb", control=level_9))])
    so_mark = cmsg(socket.SOL_SOCKET, 36, struct.pack("=I", 1))
    out.append(["SO_MARK on unix", c_sendmsg(fd, msghdr(data=b"qc", control=so_mark))])
    drained = []
    for _ in range(3):
        drained.append(recv_fds(b))
    out.append(["received", drained])
    d = tempfile.mkdtemp()
    missing = os.path.join(d, "missing").encode()
    sun = struct.pack("=H", socket.AF_UNIX) + missing + b"\0"
    u = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    out.append(["bad fd to a missing path",
                c_sendmsg(u.fileno(), msghdr(name=sun, data=b"qd", control=rights([987])))])
    out.append(["bad cmsg_len to a missing path",
                c_sendmsg(u.fileno(), msghdr(name=sun, data=b"qe",
                                             control=struct.pack("=QiI", 8, 1, 1)))])
    out.append(["SO_MARK to a missing path",
                c_sendmsg(u.fileno(), msghdr(name=sun, data=b"qf", control=so_mark))])
    out.append(["one fd to a missing path",
                c_sendmsg(u.fileno(), msghdr(name=sun, data=b"qg", control=rights([r])))])
    os.rmdir(d)


@case
def scm_rights_inet(out):
    rx = udp_receiver("U1")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fd = s.fileno()
    dest = sin("127.0.0.1", rx.getsockname()[1])
    r, w = os.pipe()
    out.append(["one fd", c_sendmsg(fd, msghdr(name=dest, data=b"r1", control=rights([r])))])
    out.append(["bad fd", c_sendmsg(fd, msghdr(name=dest, data=b"r2", control=rights([987])))])
    out.append(["empty block", c_sendmsg(fd, msghdr(name=dest, data=b"r3", control=rights([])))])
    out.append(["254 fds", c_sendmsg(fd, msghdr(name=dest, data=b"r4",
                                                control=rights([r] * 254)))])
    creds = cmsg(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, struct.pack("=iII", 1, 0, 0))
    out.append(["credentials of pid 1", c_sendmsg(fd, msghdr(name=dest, data=b"r5",
                                                             control=creds))])
    short = cmsg(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, b"\0" * 8)
    out.append(["short credentials", c_sendmsg(fd, msghdr(name=dest, data=b"r6", control=short))])
    got = []
    for _ in range(6):
        got.append(received(rx))
    out.append(["received", got])
    lst = tcp_listener("L1")
    t = socket.socket()
    t.connect(lst.getsockname())
    out.append(["tcp, bad fd", c_sendmsg(t.fileno(), msghdr(data=b"r7", control=rights([987])))])
    out.append(["accept", accepted(lst)])


@case
def scm_credentials_own(out):
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    fd = a.fileno()

    def creds(pid, uid, gid):
        return cmsg(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, struct.pack("=iII", pid, uid, gid))

    def seen():
        b.settimeout(1)
        try:
            data, anc, _, _ = b.recvmsg(16, socket.CMSG_SPACE(12))
        except (OSError, socket.timeout):
            return "timeout"
        for level, kind, payload in anc:
            if (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS):
                pid, uid, gid = struct.unpack("=iII", payload[:12])
                return [norm(data), "self" if pid == os.getpid() else pid, uid, gid]
        return [norm(data), "none"]

    me = (os.getpid(), os.getuid(), os.getgid())
    out.append(["ids", [os.getuid(), os.getgid()]])
    out.append(["none given", c_sendmsg(fd, msghdr(data=b"s1"))])
    out.append(["seen", seen()])
    out.append(["own", c_sendmsg(fd, msghdr(data=b"s2", control=creds(*me)))])
    out.append(["seen", seen()])
    out.append(["pid 1", c_sendmsg(fd, msghdr(data=b"s3", control=creds(1, me[1], me[2])))])
    out.append(["uid 0", c_sendmsg(fd, msghdr(data=b"s4", control=creds(me[0], 0, me[2])))])
    out.append(["short", c_sendmsg(fd, msghdr(data=b"s5", control=cmsg(
        socket.SOL_SOCKET, socket.SCM_CREDENTIALS, b"\0" * 8)))])
    out.append(["seen", seen()])


@case
def ip_pktinfo(out):
    rx = udp_receiver("U1")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fd = s.fileno()
    dest = sin("127.0.0.1", rx.getsockname()[1])
    pktinfo = cmsg(socket.IPPROTO_IP, IP_PKTINFO, struct.pack("=i4s4s", 0,
                   socket.inet_aton("127.0.0.1"), socket.inet_aton("0.0.0.0")))
    out.append(["IP_PKTINFO", c_sendmsg(fd, msghdr(name=dest, data=b"t1", control=pktinfo))])
    out.append(["received", received(rx)])
    out.append(["names", names(s)])


@case
def harmless_and_unknown_cmsgs(out):
    rx = udp_receiver("U1")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fd = s.fileno()
    dest = sin("127.0.0.1", rx.getsockname()[1])
    ttl = cmsg(socket.IPPROTO_IP, socket.IP_TTL, struct.pack("=i", 9))
    out.append(["IP_TTL", c_sendmsg(fd, msghdr(name=dest, data=b"u1", control=ttl))])
    bad_ttl = cmsg(socket.IPPROTO_IP, socket.IP_TTL, struct.pack("=i", 300))
    out.append(["IP_TTL 300", c_sendmsg(fd, msghdr(name=dest, data=b"u2", control=bad_ttl))])
    out.append(["SOL_IP type 99", c_sendmsg(fd, msghdr(name=dest, data=b"u3",
                                                       control=cmsg(socket.IPPROTO_IP, 99, b"\0" * 4)))])
    out.append(["level 6", c_sendmsg(fd, msghdr(name=dest, data=b"u4",
                                                control=cmsg(6, 1, b"\0" * 4)))])
    out.append(["SO_MARK", c_sendmsg(fd, msghdr(name=dest, data=b"u5",
                                                control=cmsg(socket.SOL_SOCKET, 36, b"\1\0\0\0")))])
    out.append(["SOL_SOCKET type 99", c_sendmsg(fd, msghdr(name=dest, data=b"u6",
                                                           control=cmsg(socket.SOL_SOCKET, 99, b"\0" * 4)))])
    got = []
    for _ in range(3):
        got.append(received(rx))
    out.append(["received", got])


@case
def reuse_options(out):
    a = socket.socket()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    out.append(["bind a", res(a.bind, ("127.0.0.1", 0))])
    port = a.getsockname()[1]
    PORTS[port] = "R"
    out.append(["listen a", res(a.listen, 4)])
    b = socket.socket()
    b.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    out.append(["bind b, same port, SO_REUSEPORT", res(b.bind, ("127.0.0.1", port))])
    out.append(["listen b", res(b.listen, 4)])
    c = socket.socket()
    out.append(["bind c, same port", res(c.bind, ("127.0.0.1", port))])
    d = socket.socket()
    d.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    out.append(["bind d, same port, SO_REUSEADDR", res(d.bind, ("127.0.0.1", port))])
    out.append(["bind a again", res(a.bind, ("127.0.0.1", port))])
    u1 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u1.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    out.append(["udp bind 1", res(u1.bind, ("127.0.0.1", 0))])
    uport = u1.getsockname()[1]
    PORTS[uport] = "RU"
    u2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u2.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    out.append(["udp bind 2, SO_REUSEADDR", res(u2.bind, ("127.0.0.1", uport))])
    u3 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out.append(["udp bind 3", res(u3.bind, ("127.0.0.1", uport))])
    out.append(["names", [names(a), names(b), names(u2)]])


@case
def bind_errors(out):
    s = socket.socket()
    fd = s.fileno()
    out.append(["short", c_bind(fd, sin("127.0.0.1", 0)[:8])])
    out.append(["AF_INET6", c_bind(fd, sin6("::1", 0))])
    out.append(["AF_UNSPEC 127.0.0.1", c_bind(fd, sin("127.0.0.1", 0, 0))])
    out.append(["NULL", c_bind(fd, None, 16)])
    out.append(["len 200", c_bind(fd, sin("127.0.0.1", 0), 200)])
    out.append(["len -1", c_bind(fd, sin("127.0.0.1", 0), -1)])
    out.append(["names", names(s)])
    out.append(["good", c_bind(fd, sin("127.0.0.1", 0))])
    out.append(["twice", c_bind(fd, sin("127.0.0.1", 0))])
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out.append(["listen udp", res(u.listen, 1)])
    out.append(["names", names(u)])
    t = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    out.append(["listen unbound unix", res(t.listen, 1)])


@case
def listen_states(out):
    lst = tcp_listener("L1")
    s = socket.socket()
    s.connect(lst.getsockname())
    out.append(["listen connected", res(s.listen, 1)])
    b = socket.socket()
    b.bind(("127.0.0.1", 0))
    PORTS[b.getsockname()[1]] = "B"
    out.append(["listen bound", res(b.listen, 1)])
    out.append(["listen again", res(b.listen, 2)])
    out.append(["names", names(b)])


@case
def fast_open(out):
    lst = tcp_listener("L1")
    s = socket.socket()
    out.append(["sendto MSG_FASTOPEN", res(s.sendto, b"v1", socket.MSG_FASTOPEN, lst.getsockname())])
    out.append(["names", names(s)])
    out.append(["accept", accepted(lst)])
    out.append(["again, to another address",
                piped(s.sendto, b"v2", socket.MSG_FASTOPEN, (DENIED, 9))])
    out.append(["again, short address",
                c_sendto(s.fileno(), b"v3", socket.MSG_FASTOPEN, sin("127.0.0.1", 9)[:8])])
    t = socket.socket()
    out.append(["AF_UNSPEC", c_sendto(t.fileno(), b"v4", socket.MSG_FASTOPEN,
                                      struct.pack("=H14x", 0))])
    out.append(["short", c_sendto(t.fileno(), b"v5", socket.MSG_FASTOPEN,
                                  sin("127.0.0.1", 9)[:8])])
    out.append(["names", names(t)])
    u = socket.socket()
    u.setsockopt(socket.IPPROTO_TCP, 30, 1)  # TCP_FASTOPEN_CONNECT
    out.append(["deferred connect", res(u.connect, lst.getsockname())])
    out.append(["names", names(u)])
    out.append(["sendmsg", res(u.sendmsg, [b"v6"])])
    out.append(["accept", accepted(lst)])


@case
def bad_arguments_in_order(out):
    good = sin("127.0.0.1", 9)
    null = os.open("/dev/null", os.O_RDONLY)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for label, fd in (("bad fd", 999), ("not a socket", null), ("socket", s.fileno())):
        out.append(["connect NULL, " + label, c_connect(fd, None, 16)])
        out.append(["connect len 200, " + label, c_connect(fd, good, 200)])
        out.append(["bind NULL, " + label, c_bind(fd, None, 16)])
        out.append(["sendto NULL address, " + label, c_sendto(fd, b"w", 0, None, 16)])
        bad = c_sendto(fd, b"w", 0, good, 200)
        out.append(["sendto len 200, " + label, bad])
        ctypes.set_errno(0)
        out.append(["sendto kernel buffer, " + label,
                    raw(libc.sendto(fd, 0xffff800000000000, 10, 0, buf(good), 16))])
        out.append(["sendmsg NULL, " + label, raw(libc.sendmsg(fd, None, 0))])
        ctypes.set_errno(0)
        out.append(["sendmmsg NULL, " + label, raw(libc.sendmmsg(fd, None, 1, 0))])
    os.close(null)


@case
def udp_first_checks(out):
    rx = udp_receiver("U1")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out.append(["MSG_OOB, port 0", res(s.sendto, b"x", socket.MSG_OOB, ("127.0.0.1", 0))])
    out.append(["MSG_OOB", res(s.sendto, b"x", socket.MSG_OOB, rx.getsockname())])
    out.append(["names", names(s)])
    six = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    big = b"x" * 70000
    out.append(["v6 socket, AF_INET 70000, port 0", c_sendto(six.fileno(), big, 0,
                                                             sin("127.0.0.1", 0))])
    out.append(["v6 socket, mapped 70000, port 0",
                res(six.sendto, big, ("::ffff:127.0.0.1", 0))])
    out.append(["v6 socket, ::1 70000, port 0", res(six.sendto, big, ("::1", 0))])
    out.append(["v6 socket, ::1 70000", res(six.sendto, big, ("::1", 9))])
    out.append(["names", names(six)])


@case
def udp_cmsg_levels(out):
    rx = udp_receiver("U1")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fd = s.fileno()
    dest = sin("127.0.0.1", rx.getsockname()[1])
    msgs = [
        ("SO_PRIORITY 3", cmsg(socket.SOL_SOCKET, socket.SO_PRIORITY, struct.pack("=I", 3))),
        ("SO_PRIORITY 7", cmsg(socket.SOL_SOCKET, socket.SO_PRIORITY, struct.pack("=I", 7))),
        ("SO_TIMESTAMPING_NEW", cmsg(socket.SOL_SOCKET, 65, struct.pack("=I", 0))),
        ("UDP_SEGMENT", cmsg(17, 103, struct.pack("=H", 1000))),
        ("SOL_UDP type 1", cmsg(17, 1, struct.pack("=I", 0))),
        ("IPV6_HOPLIMIT on IPv4", cmsg(socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT,
                                       struct.pack("=i", 9))),
        ("IP_TOS", cmsg(socket.IPPROTO_IP, socket.IP_TOS, struct.pack("=i", 0x10))),
    ]
    for label, c in msgs:
        out.append([label, c_sendmsg(fd, msghdr(name=dest, data=b"y", control=c))])
    six = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    six_rx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    six_rx.bind(("::1", 0))
    six_rx.settimeout(1)
    PORTS[six_rx.getsockname()[1]] = "U6"
    dest6 = sin6("::1", six_rx.getsockname()[1])
    ttl = cmsg(socket.IPPROTO_IP, socket.IP_TTL, struct.pack("=i", 9))
    out.append(["IP_TTL on IPv6", c_sendmsg(six.fileno(), msghdr(name=dest6, data=b"z",
                                                                control=ttl))])
    hop = cmsg(socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT, struct.pack("=i", 9))
    out.append(["IPV6_HOPLIMIT on IPv6", c_sendmsg(six.fileno(), msghdr(name=dest6, data=b"z",
                                                                       control=hop))])
    odd = cmsg(socket.IPPROTO_IPV6, 99, struct.pack("=i", 9))
    out.append(["SOL_IPV6 type 99 on IPv6", c_sendmsg(six.fileno(), msghdr(name=dest6, data=b"z",
                                                                          control=odd))])
    got = []
    for _ in range(len(msgs)):
        got.append(received(rx))
    out.append(["received", got])
    got = []
    for _ in range(3):
        try:
            data, src = six_rx.recvfrom(64)
            got.append([norm(data), norm(src[:2])])
        except socket.timeout:
            got.append("timeout")
    out.append(["received v6", got])


@case
def tcp_cmsgs(out):
    lst = tcp_listener("L1")
    t = socket.socket()
    fd = t.fileno()
    odd = cmsg(socket.SOL_SOCKET, 99, b"\0" * 4)
    out.append(["unconnected, unknown type", piped(c_sendmsg, fd, msghdr(data=b"a", control=odd))])
    out.append(["unconnected, malformed", piped(c_sendmsg, fd, msghdr(
        data=b"a", control=struct.pack("=QiI", 8, 1, 1)))])
    t.connect(lst.getsockname())
    out.append(["unknown type", c_sendmsg(fd, msghdr(data=b"b", control=odd))])
    mark = cmsg(socket.SOL_SOCKET, 36, struct.pack("=I", 1))
    out.append(["SO_MARK", c_sendmsg(fd, msghdr(data=b"c", control=mark))])
    pktinfo = cmsg(socket.IPPROTO_IP, IP_PKTINFO, struct.pack("=i4s4s", 0,
                   socket.inet_aton("127.0.0.1"), socket.inet_aton("0.0.0.0")))
    out.append(["IP_PKTINFO", c_sendmsg(fd, msghdr(data=b"d", control=pktinfo))])
    out.append(["accept", accepted(lst)])


@case
def scm_rights_o_path(out):
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    p = os.open("/", os.O_PATH)
    out.append(["O_PATH fd", c_sendmsg(a.fileno(), msghdr(data=b"o", control=rights([p])))])
    got = recv_fds(b)
    out.append(["received", [got[0], got[1]] if isinstance(got, list) else got])


@case
def sendmmsg_sigpipe(out):
    lst = tcp_listener("L1")
    s = socket.socket()
    s.connect(lst.getsockname())
    s.shutdown(socket.SHUT_WR)
    v = ctypes.create_string_buffer(msghdr(data=b"m") + struct.pack("=I4x", 0), 64)
    KEEP.append(v)
    before = PIPES[0]
    ctypes.set_errno(0)
    r = raw(libc.sendmmsg(s.fileno(), ctypes.addressof(v), 1, 0))
    settle()
    out.append(["sendmmsg", [r, PIPES[0] - before]])


def main():
    wanted = sys.argv[1:] or list(CASES)
    results = {}
    for name in wanted:
        PORTS.clear()
        steps = []
        try:
            CASES[name](steps)
        except Exception as e:  # a case that breaks is reported, never hidden
            steps.append(["exception", "%s: %s" % (type(e).__name__, e)])
        # A label that repeats gets its number: "names", "names #2"...
        seen = {}
        for step in steps:
            seen[step[0]] = seen.get(step[0], 0) + 1
            if seen[step[0]] > 1:
                step[0] = "%s #%d" % (step[0], seen[step[0]])
        results[name] = steps
    print(json.dumps({"cases": results}))


main()
