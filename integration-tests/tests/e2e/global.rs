//! D7: confinement is local to the confined processes; nothing global changes.

use std::process::Command;

use netjail_integration_tests::{confined, policy_file, which, Canary};

use crate::probe;

/// Interfaces, addresses, routes, policy rules, and the network settings a broker might be
/// tempted to touch, as text. Lifetimes and expiry counters, which tick by themselves, are
/// left out. `prefix` runs each command through a wrapper (`unshare -n ...`).
pub(crate) fn snapshot(prefix: &[&str]) -> String {
    let script =
        "ip -o link show; ip -o addr show; ip route show table all; ip -6 route show table all; \
                  ip rule show; ip -6 rule show; \
                  cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/ip_unprivileged_port_start \
                      /proc/sys/net/ipv4/ip_local_port_range /proc/sys/net/ipv4/tcp_fastopen; \
                  if command -v nft >/dev/null; then nft list ruleset; fi; \
                  if command -v iptables-save >/dev/null; then iptables-save | grep -v '^#'; fi";
    let mut cmd = Command::new(prefix.first().copied().unwrap_or("sh"));
    if prefix.is_empty() {
        cmd.args(["-c", script]);
    } else {
        cmd.args(&prefix[1..]).args(["sh", "-c", script]);
    }
    let out = cmd.output().expect("run the snapshot commands");
    assert!(out.status.success(), "snapshot failed: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let mut words: Vec<&str> = Vec::new();
            let mut skip = 0;
            for w in l.split_whitespace() {
                if skip > 0 {
                    skip -= 1;
                } else if matches!(w, "valid_lft" | "preferred_lft" | "expires") {
                    skip = 1;
                } else {
                    words.push(w);
                }
            }
            words.join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// D7: a confined session that connects, is refused, binds (on a jail address), listens and
/// sends datagrams leaves the host's interfaces, addresses, routes, rules, firewall and
/// network settings exactly as they were. The snapshot is shown able to see a change: inside
/// a network namespace made for the test, bringing `lo` up changes it.
#[test]
fn s_d7_confinement_changes_nothing_global() {
    if which("ip").is_none() || which("unshare").is_none() {
        netjail_integration_tests::skip(
            "s_d7_confinement_changes_nothing_global",
            "ip or unshare not found",
        );
        return;
    }
    let inner = ["unshare", "-n", "--"];
    let quiet = snapshot(&inner);
    let changed = {
        let out = Command::new("unshare")
            .args([
                "-n",
                "--",
                "sh",
                "-c",
                "ip link set lo up && ip -o link show && ip -o addr show",
            ])
            .output()
            .expect("unshare");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        !quiet.contains("LOOPBACK,UP") && changed.contains("LOOPBACK,UP"),
        "the snapshot cannot see a change:\n{quiet}\n---\n{changed}"
    );

    let before = snapshot(&[]);
    let (allowed, denied, udp) = (Canary::tcp4(), Canary::tcp4(), Canary::udp4());
    let policy = policy_file(&format!(
        "name = \"d7\"\njail_address = \"127.0.0.2\"\n[[allow]]\n\
         connect = [\"tcp://127.0.0.1:{}\", \"udp://127.0.0.1:{}\"]\nbind = [\"any://*:*\"]\n",
        allowed.port(),
        udp.port()
    ));
    for args in [
        vec!["connect", "tcp", "127.0.0.1", &allowed.port_str()],
        vec!["connect", "tcp", "127.0.0.1", &denied.port_str()],
        vec!["bind", "tcp", "0.0.0.0", "0", "--listen"],
        vec!["listen-unbound", "inet"],
        vec!["source", "udp", &udp.port_str()],
    ] {
        let mut full = vec![probe()];
        full.extend(args.iter().copied());
        let out = confined(policy.as_str(), &full);
        assert!(out.json.is_some(), "{}", out.describe());
    }
    assert_eq!(allowed.wait_count(1, std::time::Duration::from_secs(5)), 1);
    assert_eq!(denied.settled_count(), 0);
    let after = snapshot(&[]);
    assert_eq!(
        before, after,
        "a confined session changed the host's network state"
    );
}
