//! Connects under a storm of signals: a connect the broker performed must not be performed
//! twice when a signal interrupts the wait (which the program would see as `EISCONN`).

use std::time::Duration;

use netjail_integration_tests::{unconfined, Canary};

use crate::{probe, Via};

const N: u64 = 2000;

fn storm(via: &Via, restart: bool) {
    let canary = Canary::tcp4();
    let port = canary.port_str();
    let n = N.to_string();
    let mut args = vec![probe(), "signal-storm", &port, &n];
    if !restart {
        args.push("--no-restart");
    }
    let native = unconfined(&args);
    assert_eq!(
        native.json()["ok"],
        N,
        "the probe fails unconfined: {}",
        native.describe()
    );

    let out = via.run_for("loopback-only", &args, Duration::from_secs(50));
    let v = out.json();
    assert_eq!(
        v["eisconn"],
        0,
        "connect performed twice (EISCONN after EINTR): {}",
        out.describe()
    );
    assert_eq!(
        v["ok"],
        N,
        "not every connect succeeded: {}",
        out.describe()
    );
    assert!(
        v["signals"].as_u64() > Some(0),
        "the timer never fired: {}",
        out.describe()
    );
    assert_eq!(canary.wait_count(2 * N, Duration::from_secs(10)), 2 * N);
}

fn storm_restart(via: Via) {
    storm(&via, true);
}

fn storm_no_restart(via: Via) {
    storm(&via, false);
}

both!(
    /// 2000 connects under a 1 ms SIGALRM timer with SA_RESTART: all succeed, none twice.
    signal_storm_sa_restart => storm_restart
);
both!(
    /// 2000 connects under a 1 ms SIGALRM timer without SA_RESTART (EINTR reaches the program,
    /// which retries): all succeed, none twice.
    signal_storm_no_restart => storm_no_restart
);
