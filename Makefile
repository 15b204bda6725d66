# netjail: `make demo` shows a confined program with one allowed and one denied connection;
# `make test` runs the checks and every test. Both install what they need on Debian/Ubuntu.

CARGO ?= cargo
# Debian packages the build, the tests and the benches need: the one list, which `.ci/run`
# installs too (`make deps`). slirp4netns and passt (pasta) are the user-mode networks
# `nj-bench bridge` measures; the last three are the test suites `make compat` runs
# (docs/compat.md).
DEB_PACKAGES := libseccomp-dev pkg-config gcc curl python3 iproute2 busybox-static runc crun tmux \
  util-linux slirp4netns passt libpython3.11-testsuite python3-tornado python3-twisted

.PHONY: all build release demo test lint unit deps bench bench-scale fuzz-smoke compat compat-ci clean

all: build

deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" -ne 0 ]; then \
	    echo "netjail needs:$$missing -- run: sudo apt-get install -y$$missing" >&2; exit 1; fi; \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

build: deps
	$(CARGO) build --workspace

release: deps
	$(CARGO) build --release --workspace

demo: build
	@sh demo/demo.sh target/debug/netjail

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps

# The tests confine real programs with the real kernel: they need root for some attacks
# (pidfd_getfd of another user's process, ptrace) and say SKIP otherwise; NETJAIL_STRICT=1
# turns every skip into a failure (CI sets it).
test: lint
	$(CARGO) build --workspace --all-targets
	$(CARGO) test --workspace --no-fail-fast

unit: deps
	$(CARGO) test --workspace --lib

# Six benches, each interleaving its variants in one run (the machine may be noisy):
# `nj-bench`, connect() latency native vs through the broker; `nj-bench cost`, the cost rule
# (send and receive on connected sockets never reach the broker), native vs confined;
# `nj-bench held`, one sandbox's connects idle vs while another has calls held for operators;
# `nj-bench embedded`, connects through an embedded broker: policy, run-time rule, a hook;
# `nj-bench flood` (issue 8), one sandbox's connects unloaded vs while another sandbox's 2,000
# threads loop on connects the policy denies: the p99 ratio against its bound of 2x, PASS or
# FAIL (reported; `--check` makes a FAIL exit 1), and the flood's denials per second.
# Options for the second: BENCH_COST_ARGS="--pairs 25" (see `nj-bench cost --help`); for the
# last: BENCH_FLOOD_ARGS="--iterations 10000 --rounds 10" (see `nj-bench flood --help`).
# And `nj-bench bridge` (issue 19), bulk TCP throughput and connect latency from a network
# namespace of the bench's own to the host's 127.0.0.1, host networking vs slirp4netns vs
# pasta (root; about 10 s; see `nj-bench bridge --help`).
bench: release
	$(CARGO) run --release -p netjail-bench --bin nj-bench
	$(CARGO) run --release -p netjail-bench --bin nj-bench -- cost $(BENCH_COST_ARGS)
	$(CARGO) run --release -p netjail-bench --bin nj-bench -- held
	$(CARGO) run --release -p netjail-bench --bin nj-bench -- embedded
	$(CARGO) run --release -p netjail-bench --bin nj-bench -- flood $(BENCH_FLOOD_ARGS)
	$(CARGO) run --release -p netjail-bench --bin nj-bench -- bridge

# Scale (issue 8): its own netjaild with 10,000 registered sandboxes (confined `sleep`s): the
# broker's memory, threads and fds per sandbox, then the decision rate with 1, 16 and 256 busy
# sandboxes next to as many unconfined processes. About a minute or two on 2 CPUs; needs
# RLIMIT_NOFILE above 10,000 (it raises its soft limit to the hard one) and pid_max above
# 20,000. Smaller: BENCH_SCALE_ARGS="--sandboxes 1000" (see `nj-bench scale --help`).
bench-scale: release
	$(CARGO) run --release -p netjail-bench --bin nj-bench -- scale $(BENCH_SCALE_ARGS)

# Fuzzing (docs/fuzzing.md), never part of `make test`: it needs the nightly toolchain and
# cargo-fuzz (installed here when missing). Each target runs FUZZ_SECONDS (default 20) from
# its committed seeds in fuzz/corpus/TARGET, with debug assertions (overflow checks) on;
# what it learns goes to fuzz/target/corpus/TARGET, which is not committed. A crash fails
# the run and leaves its input in fuzz/artifacts/TARGET/; fuzz/TARGET.dict, when there is
# one, gives libFuzzer the target's keywords. The first build takes minutes.
FUZZ_TARGETS := protocol_decode policy_parse syscall_args address_decode
FUZZ_SECONDS ?= 20
fuzz-smoke:
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/target/corpus/$$t; \
	  dict=""; [ -f fuzz/$$t.dict ] && dict="-dict=fuzz/$$t.dict"; \
	  echo "fuzz-smoke: $$t for $(FUZZ_SECONDS)s"; \
	  $(CARGO) +nightly fuzz run --debug-assertions $$t fuzz/target/corpus/$$t fuzz/corpus/$$t \
	    -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 $$dict || exit 1; \
	done

# Compatibility (docs/compat.md): CPython's, Tornado's and Twisted's own network tests, test by
# test, unconfined and under `netjail run --policy allow-all` and `loopback-only`, each run in
# a network namespace of its own with only loopback. Report in target/compat/report.{txt,json};
# fails on a regression docs/compat.md does not explain or lists as an open bug. `make compat`
# takes about 17 minutes on 2 busy CPUs; `make compat-ci` is its subset, 3.5 minutes, which
# .ci/run runs after `make test`. Options:
# COMPAT_ARGS="--suite tornado --policy allow-all" (see `compat.py --help`).
NETJAIL_BIN = $(or $(CARGO_TARGET_DIR),target)/debug/netjail
compat: deps
	$(CARGO) build -p netjail-client --bin netjail
	python3 integration-tests/compat/compat.py --netjail $(NETJAIL_BIN) $(COMPAT_ARGS)

compat-ci: deps
	$(CARGO) build -p netjail-client --bin netjail
	python3 integration-tests/compat/compat.py --netjail $(NETJAIL_BIN) --ci $(COMPAT_ARGS)

clean:
	$(CARGO) clean
