"""Compatibility harness: real programs' own network test suites, unconfined and confined.

Each suite below is a set of Python test modules that other people wrote for their own code
(CPython's standard library, Tornado, Twisted), installed from Debian's packages. Every module
runs test by test three times: unconfined, then under `netjail run --policy P` for each policy.
A test that passes unconfined and does anything else confined (fails, errors, hangs, kills its
process, is skipped, never runs) is a regression. docs/compat.md gives each one a reason; this
harness reads its tables and fails on a regression they do not explain or list as an open
netjail bug.

Every run happens in a network namespace of its own with only `lo` up, inside a PID namespace
that ends with it: the tests can reach nothing but loopback, whatever they try, and a hung test
is ended with everything it started. Tests that want the internet are also left out by the
suites' own switches (CPython's resources, Tornado's NO_NETWORK).

    compat.py --netjail target/debug/netjail              every suite, allow-all and loopback-only
    compat.py --netjail ... --ci                          the CI subset
    compat.py --netjail ... --suite tornado --module tornado.test.iostream_test
    compat.py --list                                      the suites and their modules

The report goes to stdout and to OUT/report.txt and OUT/report.json; each run's output (the
tests' own and the broker's audit lines, with a `compat: start ID` line before each test) is in
OUT/logs/. Exit status: 0 when every regression is explained (a refusal the policy asks for, a
kernel limit), 1 otherwise, 2 on a usage error.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "runner.py"
REPO = HERE.parent.parent

# Debian's interpreter: the test suites below are Debian packages built for it
# (libpython3.11-testsuite, python3-tornado, python3-twisted). Another python3 earlier in
# PATH (pyenv, a virtualenv) has neither.
DEFAULT_PYTHON = "/usr/bin/python3"

POLICIES = ["allow-all", "loopback-only"]

# The outcomes that count as passing, unconfined and confined alike.
PASSING = {"pass"}


@dataclass
class Suite:
    name: str
    setup: str
    modules: list
    env: dict = field(default_factory=dict)
    why: str = ""
    # Test ids (patterns) left out, each group with its reason in a comment.
    exclude: list = field(default_factory=list)
    # module -> patterns: of that module, only the tests that match one.
    include: dict = field(default_factory=dict)

    def select(self, module, ids):
        keep = self.include.get(module)
        return [t for t in ids
                if not any(fnmatchcase(t, x) for x in self.exclude)
                and (keep is None or any(fnmatchcase(t, k) for k in keep))]


SUITES = [
    Suite(
        name="cpython",
        setup="cpython",
        why="CPython 3.11's own tests of its socket, asyncio, HTTP and server modules "
        "(Debian's libpython3.11-testsuite)",
        modules=[
            # test.test_socketserver is left out: it asks for the `network` resource.
            "test.test_socket",
            "test.test_selectors",
            "test.test_asyncio.test_events",
            "test.test_asyncio.test_sock_lowlevel",
            "test.test_asyncio.test_unix_events",
            "test.test_asyncio.test_server",
            "test.test_asyncio.test_streams",
            "test.test_asyncio.test_base_events",
            "test.test_asyncio.test_sendfile",
            "test.test_asyncio.test_ssl",
            "test.test_httplib",
            "test.test_httpservers",
            "test.test_urllib2_localnet",
            "test.test_xmlrpc",
            "test.test_ftplib",
            "test.test_poplib",
            "test.test_telnetlib",
            "test.test_ssl",
            "test.test_logging",
            "test.test_multiprocessing_forkserver",
        ],
        # multiprocessing's managers, listeners and clients talk over unix sockets; the rest
        # of the module (pools, locks, shared memory) does not reach the network calls.
        include={
            "test.test_multiprocessing_forkserver": [
                "*Manager*", "*Listener*", "*PicklingConnections*",
            ],
        },
        exclude=[
            # AF_VSOCK talks to the hypervisor, not to loopback.
            "test.test_socket.*VSOCK*",
        ],
    ),
    Suite(
        name="tornado",
        setup="plain",
        why="Tornado 6.2's own tests of its IOStream, TCP server and client, HTTP server and "
        "client, and WebSocket (Debian's python3-tornado)",
        # tornado.test.util.skipIfNoNetwork: leaves out the tests that resolve internet names.
        env={"NO_NETWORK": "1"},
        modules=[
            "tornado.test.iostream_test",
            "tornado.test.tcpserver_test",
            "tornado.test.tcpclient_test",
            "tornado.test.netutil_test",
            "tornado.test.httpserver_test",
            "tornado.test.simple_httpclient_test",
            "tornado.test.httpclient_test",
            "tornado.test.websocket_test",
            "tornado.test.web_test",
            "tornado.test.asyncio_test",
            "tornado.test.process_test",
        ],
    ),
    Suite(
        name="twisted",
        setup="twisted",
        why="Twisted 22.4's own tests of its reactors' TCP, UDP and unix transports, on each "
        "reactor it has here (Debian's python3-twisted)",
        modules=[
            "twisted.internet.test.test_tcp",
            "twisted.internet.test.test_unix",
            "twisted.internet.test.test_udp",
            "twisted.internet.test.test_socket",
            "twisted.internet.test.test_endpoints",
            "twisted.test.test_tcp",
            "twisted.test.test_udp",
            "twisted.test.test_unix",
            "twisted.test.test_loopback",
            "twisted.test.test_ftp",
        ],
        exclude=[
            # Each reactor test runs once per reactor (select, poll, epoll, asyncio, GLib,
            # GTK). They differ in how they wait for events, not in the socket calls they
            # make; epoll (the default on Linux) and asyncio keep the run short.
            "*_SelectReactorTests.*",
            "*_PollReactorTests.*",
            "*_GIReactorTests.*",
            "*_Glib2ReactorTests.*",
            "*_Gtk2ReactorTests.*",
            "*_Gtk3ReactorTests.*",
            # Trial's base class, found where a module imports it: not a test.
            "twisted.trial.*",
        ],
    ),
]

# The CI subset: quick modules, none of whose tests was unstable here, one or more per suite,
# covering TCP, UDP and unix sockets, servers and clients.
CI_MODULES = [
    "test.test_socket",
    "test.test_asyncio.test_events",
    "test.test_asyncio.test_sock_lowlevel",
    "test.test_asyncio.test_streams",
    "tornado.test.iostream_test",
    "tornado.test.tcpserver_test",
    "twisted.internet.test.test_unix",
    "twisted.internet.test.test_udp",
]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# --- running one module ---------------------------------------------------------------------


def netns_argv(argv):
    """argv run in a new network namespace with `lo` up, in a new PID namespace whose end
    (when its first process dies, or when `unshare` is killed) ends every process in it."""
    return [
        "unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc",
        "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
    ] + argv


def mode_argv(args, mode, inner):
    if mode == "unconfined":
        return inner
    # The harness runs as root (its namespaces need it), and so do the tests it confines: a
    # root sandbox is the caller's choice to make (docs/security.md, "3. Root sandboxes").
    return [args.netjail, "run", "--allow-root", "--policy", mode, "--"] + inner


def suite_env(suite):
    env = dict(os.environ)
    env.update(suite.env)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("PYTHONPATH", None)
    return env


def list_tests(args, suite, module):
    inner = [args.python, str(RUNNER), "list", suite.setup, module]
    with tempfile.TemporaryDirectory(prefix="compat-") as cwd:
        proc = subprocess.run(
            netns_argv(inner), cwd=cwd, env=suite_env(suite),
            capture_output=True, text=True, timeout=300,
        )
    if proc.returncode != 0:
        raise SystemExit(f"compat: cannot list {module}:\n{proc.stderr[-3000:]}")
    return [line for line in proc.stdout.splitlines() if line.strip()]


class EventReader:
    """Reads the JSON lines the runner appends, as they come."""

    def __init__(self, path):
        self.path = path
        self.offset = 0
        self.partial = ""

    def read(self):
        try:
            with open(self.path) as f:
                f.seek(self.offset)
                data = f.read()
                self.offset = f.tell()
        except FileNotFoundError:
            return []
        text = self.partial + data
        lines = text.split("\n")
        self.partial = lines.pop()
        return [json.loads(line) for line in lines if line.strip()]


def fixture_outcome(test_id, fixtures):
    """The outcome of a test that never started because a set-up of its class or module
    failed or skipped: unittest names those `setUpClass (module.Class)`."""
    for fx in fixtures:
        m = re.search(r"\(([^)]*)\)", fx["fixture"])
        if m and (test_id.startswith(m.group(1) + ".")):
            outcome = "skip" if fx["outcome"] == "skip" else "error"
            return outcome, f"{fx['fixture']}: {fx['detail']}"
    return None


def tail(path, n=40):
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return ""
    return "\n".join(lines[-n:])


# How many tests of one class may hang before the rest of the class is not run.
CLASS_HANGS = 2


def run_module(args, suite, module, ids, mode, logdir, reference=None):
    """Runs the tests `ids` of `module` under `mode`; returns {id: result}. A test that hangs
    or ends the process is recorded as such, and the runner starts again with the tests after
    it. A test counts as hung when it has no result after args.timeout seconds or, given its
    time in a reference run, after five times that plus 5 s (at least args.hang_floor)."""
    results = {}
    remaining = list(ids)
    logdir.mkdir(parents=True, exist_ok=True)
    logfile = logdir / f"{module}.log"
    logfile.unlink(missing_ok=True)

    def limit(test_id):
        took = (reference or {}).get(test_id, {}).get("seconds")
        if took is None:
            return args.timeout
        return min(args.timeout, max(args.hang_floor, 5 * took + 5))

    hangs, first_hang = {}, {}
    attempt = 0
    while remaining:
        attempt += 1
        with tempfile.TemporaryDirectory(prefix="compat-") as cwd:
            ids_file = Path(cwd) / "compat-ids"
            events_file = Path(cwd) / "compat-events"
            ids_file.write_text("\n".join(remaining) + "\n")
            inner = [args.python, str(RUNNER), "run", suite.setup, module,
                     str(events_file), str(ids_file)]
            argv = netns_argv(mode_argv(args, mode, inner))
            with open(logfile, "a") as out:
                out.write(f"compat: attempt {attempt}: {' '.join(argv)}\n")
                out.flush()
                proc = subprocess.Popen(
                    argv, cwd=cwd, env=suite_env(suite), stdin=subprocess.DEVNULL,
                    stdout=out, stderr=out, start_new_session=True,
                )
            reader = EventReader(events_file)
            current, current_start, fixtures, done, hung = None, None, [], False, False
            last_event = time.monotonic()

            def take(events):
                nonlocal current, current_start, done, last_event
                for ev in events:
                    last_event = time.monotonic()
                    if "start" in ev:
                        current, current_start = ev["start"], last_event
                    elif "end" in ev:
                        took = last_event - (current_start or last_event)
                        results[ev["end"]] = {
                            "outcome": ev["outcome"], "detail": ev["detail"],
                            "seconds": round(took, 3),
                        }
                        current = None
                    elif "fixture" in ev:
                        fixtures.append(ev)
                    elif ev.get("done"):
                        done = True

            try:
                while proc.poll() is None:
                    take(reader.read())
                    if current is not None:
                        deadline = current_start + limit(current)
                    else:
                        deadline = last_event + args.timeout
                    if time.monotonic() > deadline:
                        hung = True
                        break
                    time.sleep(0.1)
            finally:
                if proc.poll() is None:
                    # The process group of the `unshare` started above: killing it ends
                    # the PID namespace and everything the tests started.
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            take(reader.read())

        if done:
            for test_id in remaining:
                if test_id not in results:
                    outcome, detail = fixture_outcome(test_id, fixtures) or (
                        "not-run", "the runner ended without running it")
                    results[test_id] = {"outcome": outcome, "detail": detail, "seconds": 0}
            break

        # The process hung or ended in the middle: blame the test that was running, or the
        # next one if it hung between tests (in a class set-up), and go on after it.
        pending = [t for t in remaining if t not in results]
        culprit = current if current is not None else (pending[0] if pending else None)
        if culprit is None:
            break
        if hung:
            waited = limit(culprit) if current is not None else args.timeout
            outcome = "hang"
            detail = f"no result within {waited:.0f} s; the log ends:\n{tail(logfile)}"
        else:
            waited = 0
            outcome = "crash"
            detail = f"the process ended ({proc.returncode}); the log ends:\n{tail(logfile)}"
        results[culprit] = {"outcome": outcome, "detail": detail, "seconds": round(waited, 1)}
        if hung:
            # Tests of one class share their set-up: once two of them hung, the rest of the
            # class is not run (each would cost a full wait) and counts as hung too.
            cls = culprit.rsplit(".", 1)[0]
            hangs[cls] = hangs.get(cls, 0) + 1
            first_hang.setdefault(cls, culprit)
            if hangs[cls] >= CLASS_HANGS:
                for test_id in remaining:
                    if test_id.rsplit(".", 1)[0] == cls and test_id not in results:
                        results[test_id] = {
                            "outcome": "hang", "seconds": 0,
                            "detail": f"not run: {hangs[cls]} tests of its class hung "
                                      f"before it (the first: {first_hang[cls]})"}
        idx = remaining.index(culprit)
        for test_id in remaining[:idx]:
            if test_id not in results:
                outcome, detail = fixture_outcome(test_id, fixtures) or (
                    "not-run", "skipped by the runner before a crash")
                results[test_id] = {"outcome": outcome, "detail": detail, "seconds": 0}
        remaining = [t for t in remaining[idx + 1:] if t not in results]
    return results


# --- what docs/compat.md explains -----------------------------------------------------------

EXPLAINED = ("refusal the policy asks for", "kernel limit")


def read_expectations(path):
    """Rows of docs/compat.md's tables: `| policy | suite | `test id` | outcome | reason |`.
    The test id may be a pattern (`*`). Returns [(policy, pattern, reason)]."""
    rows = []
    if not path.exists():
        return rows
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 5 or cells[0] not in POLICIES + ["both"]:
            continue
        test = cells[2].strip("`")
        rows.append((cells[0], test, cells[4]))
    return rows


def explain(expectations, policy, test_id):
    for row_policy, pattern, reason in expectations:
        if row_policy in (policy, "both") and fnmatchcase(test_id, pattern):
            return reason
    return None


def verdict(reason):
    """explained, open (a listed netjail bug) or unlisted."""
    if reason is None:
        return "unlisted"
    if reason.startswith(EXPLAINED):
        return "explained"
    return "open"


# --- the whole run --------------------------------------------------------------------------


def first_line_of_error(detail):
    lines = [line for line in detail.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if not line.startswith(" ") and ("Error" in line or "Exception" in line or ":" in line):
            return line.strip()[:200]
    return (lines[-1].strip() if lines else "")[:200]


def counts(results):
    c = {}
    for r in results.values():
        c[r["outcome"]] = c.get(r["outcome"], 0) + 1
    return dict(sorted(c.items()))


def run(args):
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    expectations = read_expectations(Path(args.expect))
    selected = CI_MODULES if args.ci else None
    report = {
        "netjail": args.netjail, "python": args.python, "policies": args.policy,
        "timeout": args.timeout, "ci": args.ci, "suites": [], "stale": [],
    }
    started = time.monotonic()
    for suite in SUITES:
        if args.suite and suite.name not in args.suite:
            continue
        modules = [m for m in suite.modules
                   if (selected is None or m in selected)
                   and (not args.module or m in args.module)]
        if not modules:
            continue
        srep = {"name": suite.name, "why": suite.why, "modules": modules, "tests": 0,
                "unconfined": {}, "policies": {}}
        unconfined, confined = {}, {p: {} for p in args.policy}
        seconds = {"unconfined": 0.0, **{p: 0.0 for p in args.policy}}
        for module in modules:
            ids = suite.select(module, list_tests(args, suite, module))
            if args.match:
                ids = [t for t in ids if any(fnmatchcase(t, m) for m in args.match)]
            for mode in ["unconfined"] + args.policy:
                t0 = time.monotonic()
                reference = None if mode == "unconfined" else unconfined
                res = run_module(args, suite, module, ids, mode, out / "logs" / mode,
                                 reference)
                took = time.monotonic() - t0
                seconds[mode] += took
                target = unconfined if mode == "unconfined" else confined[mode]
                for test_id, r in res.items():
                    r["module"] = module
                    target[test_id] = r
                log(f"compat: {suite.name} {module} {mode}: {len(ids)} tests, "
                    f"{sum(1 for r in res.values() if r['outcome'] == 'pass')} pass, "
                    f"{took:.0f} s")
        srep["tests"] = len(unconfined)
        srep["unconfined"] = {"pass": sum(1 for r in unconfined.values()
                                          if r["outcome"] in PASSING),
                              "outcomes": counts(unconfined),
                              "seconds": round(seconds["unconfined"], 1)}
        for policy in args.policy:
            res = confined[policy]
            regressed = [t for t, r in unconfined.items()
                         if r["outcome"] in PASSING and res.get(t, {}).get("outcome") not in PASSING]
            # A regression is run again alone; one that passes then is reported as unstable.
            # Hangs are not: each would cost its whole wait again.
            unstable = []
            if regressed and not args.no_confirm:
                by_module = {}
                for t in regressed:
                    if res.get(t, {}).get("outcome") != "hang":
                        by_module.setdefault(unconfined[t]["module"], []).append(t)
                for module, ids in by_module.items():
                    again = run_module(args, suite, module, ids, policy,
                                       out / "logs" / f"{policy}-again", unconfined)
                    for t in ids:
                        if again.get(t, {}).get("outcome") in PASSING:
                            unstable.append(t)
            regressions = []
            for t in regressed:
                if t in unstable:
                    continue
                r = res.get(t, {"outcome": "not-run", "detail": "no result", "module": "?"})
                reason = explain(expectations, policy, t)
                regressions.append({
                    "test": t, "module": unconfined[t]["module"], "outcome": r["outcome"],
                    "error": first_line_of_error(r["detail"]), "detail": r["detail"],
                    "reason": reason, "verdict": verdict(reason),
                })
            # A row naming a test (not a pattern) that passed unconfined and confined here:
            # the fix landed, the row should go.
            for row_policy, test_id, reason in expectations:
                if (row_policy in (policy, "both") and test_id in unconfined
                        and unconfined[test_id]["outcome"] in PASSING
                        and res.get(test_id, {}).get("outcome") in PASSING):
                    report["stale"].append({"policy": policy, "test": test_id, "reason": reason})
            srep["policies"][policy] = {
                "pass": sum(1 for r in res.values() if r["outcome"] in PASSING),
                "outcomes": counts(res),
                "seconds": round(seconds[policy], 1),
                "regressions": regressions,
                "unstable": unstable,
            }
        report["suites"].append(srep)
    report["seconds"] = round(time.monotonic() - started, 1)
    return report


def text_report(report):
    lines = []
    totals = {"passed": 0, "failed": 0, "skipped": 0}
    for s in report["suites"]:
        u = s["unconfined"]
        lines.append(f"{s['name']}: {s['tests']} tests run, {u['pass']} pass unconfined "
                     f"({u['seconds']} s) -- {s['why']}")
        lines.append(f"  unconfined outcomes: {u['outcomes']}")
        for policy, pr in s["policies"].items():
            regs = pr["regressions"]
            by = {}
            for r in regs:
                by[r["verdict"]] = by.get(r["verdict"], 0) + 1
            lines.append(
                f"  {policy}: {pr['pass']} pass, {len(regs)} regressions "
                f"({by.get('explained', 0)} explained, {by.get('open', 0)} open netjail bugs, "
                f"{by.get('unlisted', 0)} unlisted), {len(pr['unstable'])} unstable "
                f"({pr['seconds']} s)")
            for r in regs:
                why = r["reason"] or "NOT IN docs/compat.md"
                lines.append(f"    {r['outcome']:8} {r['test']}")
                lines.append(f"             {r['error']}")
                lines.append(f"             -> {why}")
            for t in pr["unstable"]:
                lines.append(f"    unstable {t} (failed in the run, passed alone)")
            passing_unconfined = u["pass"]
            totals["passed"] += passing_unconfined - len(regs)
            totals["failed"] += sum(1 for r in regs if r["verdict"] != "explained")
            totals["skipped"] += sum(1 for r in regs if r["verdict"] == "explained")
    for st in report["stale"]:
        lines.append(f"stale: {st['policy']} {st['test']} passes now; remove it from "
                     f"docs/compat.md ({st['reason']})")
    lines.append(f"compat: {report['seconds']} s in all")
    # The closing line: tests passing unconfined and confined, regressions not explained by a
    # refusal the policy asks for or a kernel limit, and those that are.
    lines.append(f"compat: {totals['passed']} passed, {totals['failed']} failed, "
                 f"{totals['skipped']} skipped")
    return "\n".join(lines), totals


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--netjail", help="the netjail binary (built from this workspace)")
    p.add_argument("--python", default=os.environ.get("COMPAT_PYTHON", DEFAULT_PYTHON))
    p.add_argument("--policy", action="append", help=f"default: {' and '.join(POLICIES)}")
    p.add_argument("--suite", action="append", help="only this suite (repeatable)")
    p.add_argument("--module", action="append", help="only this module (repeatable)")
    p.add_argument("--match", action="append", help="only test ids matching this pattern")
    p.add_argument("--ci", action="store_true", help="the CI subset")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds without a result before a test counts as hung")
    p.add_argument("--hang-floor", type=float, default=15.0,
                   help="confined, a test counts as hung after 5 times its unconfined time "
                   "plus 5 s, and no sooner than this many seconds")
    p.add_argument("--no-confirm", action="store_true",
                   help="do not run regressions again alone")
    p.add_argument("--expect", default=str(REPO / "docs" / "compat.md"))
    p.add_argument("--out", default=str(REPO / "target" / "compat"))
    p.add_argument("--list", action="store_true", help="print the suites and exit")
    args = p.parse_args()
    if args.list:
        for s in SUITES:
            print(f"{s.name}: {s.why}")
            for m in s.modules:
                print(f"  {m}{'  (ci)' if m in CI_MODULES else ''}")
        return 0
    if not args.netjail:
        p.error("--netjail is required")
    args.netjail = str(Path(args.netjail).resolve())
    args.policy = args.policy or list(POLICIES)
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            p.error(f"{tool} is needed (util-linux, iproute2)")
    if not Path(args.netjail).exists():
        p.error(f"{args.netjail} does not exist: build it first (make build)")
    # A SIGTERM unwinds like an interrupt, so that the running test's namespace is ended.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report = run(args)
    text, totals = text_report(report)
    out = Path(args.out)
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "report.txt").write_text(text + "\n")
    print(text)
    return 1 if totals["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
