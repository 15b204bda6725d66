//! `Policy::from_toml` on arbitrary text: it never panics, and a policy that parses prints
//! (`to_toml`) to text that parses back to the same policy and prints the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netjail_policy::{no_files, Policy};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = Policy::from_toml(text, "fuzz.toml");
    let checked = Policy::check_toml(text, "fuzz.toml", &[""; 0], &mut no_files);
    assert_eq!(
        parsed.is_ok(),
        checked.is_ok(),
        "check_toml and from_toml disagree"
    );
    let Ok(policy) = parsed else {
        return;
    };
    let printed = policy.to_toml();
    let again = Policy::from_toml(&printed, "printed.toml")
        .unwrap_or_else(|e| panic!("the printed policy does not parse: {e}\n{printed}"));
    assert_eq!(again, policy, "printed:\n{printed}");
    assert_eq!(again.to_toml(), printed);
});
