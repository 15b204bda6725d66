//! Namespace bridging for containers (issue 19): a runc container with a network namespace
//! of its own (made by runc: only `lo`, down), root or rootless, reaches allowed TCP and UDP
//! services on the host's 127.0.0.1 through the OCI agent, whose policy bridges them from the
//! agent's own namespace, and is refused the rest. The rootless container's agent runs as the
//! same unprivileged user, without capabilities.

use serde_json::Value;

use netjail_integration_tests::{Outcome, TempDir};

use crate::bridge::{HostServices, CLIENT};
use crate::need_root;
use crate::oci::{
    have_runc, oci_broker, oci_socket, policies, rootless_oci_broker, with_log, Bundle,
};

/// The last JSON line the container printed.
fn result(out: &Outcome, describe: impl Fn() -> String) -> Value {
    out.stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no result: {}", describe()))
}

#[test]
fn i19_a_runc_container_with_its_own_namespace_reaches_host_services_through_the_agent() {
    let test =
        "i19_a_runc_container_with_its_own_namespace_reaches_host_services_through_the_agent";
    if !need_root(test) || !have_runc(test) || !crate::have_setpriv(test) {
        return;
    }
    let services = HostServices::start();
    let ports = services.ports();
    let mut args = vec!["/usr/bin/python3", "-c", CLIENT];
    args.extend(ports.iter().map(String::as_str));
    let sock_dir = TempDir::new();
    for rootless in [false, true] {
        let dir = TempDir::new();
        let policy = policies(dir.path(), "bridge", &services.policy("broker"));
        let broker = if rootless {
            rootless_oci_broker(dir.path())
        } else {
            oci_broker(&[], dir.path())
        };
        // Unconfined, the container's namespace has no route to the host's loopback.
        let plain = Bundle::new(&args, rootless, None);
        plain.own_network_namespace();
        plain.with_probe(sock_dir.path());
        let out = plain.run();
        let v = result(&out, || out.describe());
        assert!(
            !HostServices::reached(&v),
            "rootless={rootless}: unconfined, the container reached the host: {}",
            out.describe()
        );
        drop(plain);

        let bundle = Bundle::new(&args, rootless, None);
        bundle.own_network_namespace();
        bundle.with_probe(sock_dir.path());
        bundle.patch(&policy, &oci_socket(&broker));
        let out = bundle.run();
        let describe = || format!("rootless={rootless}: {}", with_log(&out, &broker));
        services.check(&result(&out, describe), &describe());
    }
}
