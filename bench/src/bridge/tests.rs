use super::*;

#[test]
fn a_listener_on_loopback_is_found_in_proc_net_tcp() {
    let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:C1F3 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n   1: 0100007F:0050 0100007F:D000 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0\n";
    assert!(listens_on_loopback(table, 0xC1F3));
    // Established, not listening.
    assert!(!listens_on_loopback(table, 80));
    assert!(!listens_on_loopback(table, 0xC1F4));
}

#[test]
fn gbit_s_is_bits_per_nanosecond() {
    assert_eq!(gbit_s(1_000_000_000, 8_000_000_000), 1.0);
    assert!(gbit_s(1, 0).is_nan());
}

#[test]
fn every_variant_has_a_name() {
    let names: Vec<String> = Variant::value_variants().iter().map(|v| v.key()).collect();
    assert_eq!(names, ["host", "slirp4netns", "pasta", "netjail"]);
}

#[test]
fn a_tool_given_by_a_path_that_is_not_there_is_missing() {
    let e = find_tool("pasta", Some(Path::new("/nonexistent/nj-bench/pasta"))).unwrap_err();
    assert_eq!(
        e,
        Unmeasured::Missing("no pasta at /nonexistent/nj-bench/pasta".into())
    );
}
