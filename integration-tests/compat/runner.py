"""Runs unittest-style tests one by one and writes each one's outcome as a JSON line.

This is the part of the compatibility harness that runs inside the sandbox (or unconfined, for
the reference run): `compat.py` starts it once per module, watches the events file, and starts
it again past a test that hung or killed the process.

    runner.py list SETUP MODULE              print the module's test ids, one a line
    runner.py run SETUP MODULE EVENTS IDS    run the tests listed in the file IDS, in the
                                             module's order, appending events to EVENTS

SETUP names what a suite needs before its tests load (`cpython`: the resources regrtest would
grant; `twisted`: a shorter default test timeout; `plain`: nothing). Events are JSON objects, one a line, flushed as they happen:
`{"start": ID}` before a test, `{"end": ID, "outcome": O, "detail": TEXT}` after it (O is pass,
fail, error, skip, xfail or xpass), `{"fixture": NAME, "outcome": O, "detail": TEXT}` for a
class or module set-up that failed or skipped, and `{"done": true}` at the end.
"""

import json
import sys
import unittest

# The resources a CPython test may use when run here: those regrtest grants with `-u`, less
# `network` and `urlfetch` (they reach the internet), `cpu`, `largefile`, `gui`, `audio` and
# `decimal` (slow or unrelated to sockets). Outside regrtest every resource counts as granted,
# so the list must be set before the tests run.
CPYTHON_RESOURCES = ["subprocess"]

DETAIL_LIMIT = 6000


# Twisted's reactor tests give a reactor 120 s to finish before they fail. Those run here take
# well under a second unconfined; one that waits 5 s confined is as good as hung, and failing
# on its own then is cheaper than being killed by the harness.
TWISTED_TIMEOUT = 5.0


def setup(name):
    if name == "cpython":
        from test import support

        support.use_resources = list(CPYTHON_RESOURCES)
    elif name == "twisted":
        from twisted.internet.test import reactormixins
        from twisted.trial import util

        util.DEFAULT_TIMEOUT_DURATION = TWISTED_TIMEOUT
        reactormixins.DEFAULT_TIMEOUT_DURATION = TWISTED_TIMEOUT
    elif name != "plain":
        raise SystemExit(f"runner: unknown setup {name!r}")


def flatten(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from flatten(item)
        else:
            yield item


def load(module):
    """The module's tests in the order unittest runs them, each id once (a test class that
    another module imports is found twice but runs once)."""
    seen = set()
    tests = []
    for test in flatten(unittest.defaultTestLoader.loadTestsFromName(module)):
        if test.id() not in seen:
            seen.add(test.id())
            tests.append(test)
    return tests


# Worse outcomes replace better ones when a test reports several (a subtest that fails, then
# an error in tearDown).
RANK = {"pass": 0, "skip": 1, "xfail": 1, "xpass": 2, "fail": 3, "error": 4}


class EventResult(unittest.TestResult):
    def __init__(self, events):
        super().__init__()
        self.events = events
        self.current = None

    def emit(self, event):
        self.events.write(json.dumps(event) + "\n")
        self.events.flush()

    def note(self, outcome, detail=""):
        if self.current is None:
            return
        old_outcome, old_detail = self.current
        if RANK[outcome] > RANK[old_outcome]:
            self.current = (outcome, detail[:DETAIL_LIMIT])
        elif outcome == old_outcome and detail and not old_detail:
            self.current = (outcome, detail[:DETAIL_LIMIT])

    def startTest(self, test):
        super().startTest(test)
        self.current = ("pass", "")
        # A marker in the log, so that the broker's audit lines can be read per test.
        print(f"compat: start {test.id()}", file=sys.stderr, flush=True)
        self.emit({"start": test.id()})

    def stopTest(self, test):
        super().stopTest(test)
        outcome, detail = self.current
        self.emit({"end": test.id(), "outcome": outcome, "detail": detail})
        self.current = None

    def fixture(self, test, outcome, detail):
        # Errors in setUpClass, setUpModule and their tear-downs come with a placeholder
        # instead of a test, outside startTest/stopTest.
        self.emit({"fixture": str(test), "outcome": outcome, "detail": detail[:DETAIL_LIMIT]})

    def addError(self, test, err):
        super().addError(test, err)
        text = self._exc_info_to_string(err, test)
        if self.current is None or not hasattr(test, "_testMethodName"):
            self.fixture(test, "error", text)
        else:
            self.note("error", text)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self.note("fail", self._exc_info_to_string(err, test))

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            kind = "fail" if issubclass(err[0], test.failureException) else "error"
            self.note(kind, f"{subtest}\n{self._exc_info_to_string(err, test)}")

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        if self.current is None or not hasattr(test, "_testMethodName"):
            self.fixture(test, "skip", str(reason))
        else:
            self.note("skip", str(reason))

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self.note("xfail")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self.note("xpass")


def main(argv):
    if len(argv) == 3 and argv[0] == "list":
        setup(argv[1])
        for test in load(argv[2]):
            print(test.id())
        return 0
    if len(argv) == 5 and argv[0] == "run":
        setup(argv[1])
        with open(argv[4]) as f:
            wanted = {line.strip() for line in f if line.strip()}
        suite = unittest.TestSuite(t for t in load(argv[2]) if t.id() in wanted)
        with open(argv[3], "a") as events:
            result = EventResult(events)
            suite.run(result)
            result.emit({"done": True})
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
