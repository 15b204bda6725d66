//! The patch of a bundle and the merge with a container's own profile.

use super::*;

/// A bundle configuration like `runc spec` writes (abridged), with `seccomp` spliced in.
fn config(seccomp: Option<&str>) -> String {
    let seccomp = seccomp.map_or(String::new(), |s| format!(",\n\t\t\"seccomp\": {s}"));
    format!(
        "{{\n\t\"ociVersion\": \"1.0.2-dev\",\n\t\"process\": {{\n\t\t\"terminal\": false,\n\
         \t\t\"args\": [\"/bin/busybox\", \"true\"],\n\t\t\"capabilities\": {{\n\
         \t\t\t\"bounding\": [\"CAP_AUDIT_WRITE\", \"CAP_KILL\", \"CAP_NET_BIND_SERVICE\", \
         \"CAP_NET_RAW\"],\n\t\t\t\"effective\": [\"CAP_KILL\", \"CAP_NET_RAW\", \
         \"CAP_SYS_ADMIN\"],\n\t\t\t\"ambient\": []\n\t\t}}\n\t}},\n\
         \t\"root\": {{\"path\": \"rootfs\", \"readonly\": true}},\n\t\"hostname\": \"runc\",\n\
         \t\"linux\": {{\n\t\t\"namespaces\": [{{\"type\": \"network\"}}]{seccomp}\n\t}}\n}}\n"
    )
}

fn patch(text: &str, p: &Policy) -> Result<Patched, OciError> {
    patch_config(text, "config.json", p, "t", LISTENER)
}

fn seccomp_of(text: &str) -> Json {
    Json::parse(text)
        .unwrap()
        .get("linux")
        .unwrap()
        .get("seccomp")
        .unwrap()
        .clone()
}

fn keys(j: &Json) -> Vec<&str> {
    match j {
        Json::Object(pairs) => pairs.iter().map(|(k, _)| k.as_str()).collect(),
        _ => Vec::new(),
    }
}

fn caps(doc: &Json, set: &str) -> Vec<String> {
    doc.get("process")
        .and_then(|p| p.get("capabilities"))
        .and_then(|c| c.get(set))
        .and_then(Json::as_array)
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn issue_4_patch_without_seccomp() {
    let p = policy(netjail_policy::builtin("loopback-only").unwrap());
    let text = config(None);
    let patched = patch(&text, &p).unwrap();
    assert!(!patched.merged);
    let doc = Json::parse(&patched.text).unwrap();
    assert_eq!(
        keys(&doc),
        [
            "ociVersion",
            "process",
            "root",
            "hostname",
            "linux",
            "annotations"
        ]
    );
    assert_eq!(keys(doc.get("linux").unwrap()), ["namespaces", "seccomp"]);
    assert_eq!(
        seccomp_of(&patched.text),
        seccomp_object(&p, "t", LISTENER).unwrap()
    );
    let kept = doc
        .get("annotations")
        .unwrap()
        .get(ORIGINAL_SECCOMP_ANNOTATION);
    assert_eq!(kept, Some(&Json::str("null")));
    let process = doc.get("process").unwrap();
    assert_eq!(process.get("noNewPrivileges"), Some(&Json::Bool(true)));
    assert_eq!(caps(&doc, "bounding"), ["CAP_AUDIT_WRITE", "CAP_KILL"]);
    assert_eq!(caps(&doc, "effective"), ["CAP_KILL"]);
    assert_eq!(
        patched.removed_capabilities,
        ["CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SYS_ADMIN"]
    );
    // The file's tab indentation and final newline stay.
    assert!(patched.text.starts_with("{\n\t\"ociVersion\""));
    assert!(patched.text.ends_with("}\n"));
    // A policy that keeps CAP_NET_RAW keeps it in the container.
    let raw = policy("name = \"r\"\nkeep_capabilities = [\"CAP_NET_RAW\"]\n");
    let doc = Json::parse(&patch(&text, &raw).unwrap().text).unwrap();
    assert_eq!(
        caps(&doc, "bounding"),
        ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_RAW"]
    );
}

#[test]
fn issue_4_patch_twice_is_patch_once() {
    let a = policy(netjail_policy::builtin("loopback-only").unwrap());
    let b = policy(RICH_POLICIES[1].1);
    for original in [None, Some(ALLOW_PROFILE), Some(DENY_PROFILE)] {
        let text = config(original);
        let once = patch(&text, &a).unwrap().text;
        let twice = patch(&once, &a).unwrap();
        assert_eq!(twice.text, once);
        assert_eq!(twice.merged, original.is_some());
        // Another policy over a patched file: as if the original had been patched.
        let other = patch(&once, &b).unwrap().text;
        assert_eq!(other, patch(&text, &b).unwrap().text);
    }
}

/// A profile that allows by default and refuses a few calls.
const ALLOW_PROFILE: &str = r#"{
    "defaultAction": "SCMP_ACT_ALLOW",
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
    "flags": ["SECCOMP_FILTER_FLAG_LOG"],
    "syscalls": [
        {"names": ["connect", "mount"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
        {"names": ["socket"], "action": "SCMP_ACT_LOG"},
        {"names": ["ioctl"], "action": "SCMP_ACT_KILL_PROCESS",
         "args": [{"index": 1, "value": 21522, "op": "SCMP_CMP_EQ"}]},
        {"names": ["sendto"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 2, "value": 65536, "op": "SCMP_CMP_GT"}]},
        {"names": ["bind"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 0, "value": 3, "op": "SCMP_CMP_LE"}]},
        {"names": ["ptrace", "getpid"], "action": "SCMP_ACT_ALLOW"}
    ]
}"#;

/// A profile in the style of Docker's and podman's: refuse by default, allow a list.
const DENY_PROFILE: &str = r#"{
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 1,
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "syscalls": [
        {"names": ["read", "write", "close", "exit_group", "socket", "socketpair",
                   "connect", "bind", "listen", "accept4", "sendto", "recvfrom",
                   "sendmsg", "recvmsg", "setsockopt", "getsockopt", "fcntl", "seccomp",
                   "openat", "socketcall"],
         "action": "SCMP_ACT_ALLOW"},
        {"names": ["ioctl"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 1, "value": 21505, "op": "SCMP_CMP_EQ"}]},
        {"names": ["ioctl"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 1, "value": 35090, "op": "SCMP_CMP_EQ"}]},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 2114060288, "valueTwo": 0,
                   "op": "SCMP_CMP_MASKED_EQ"}]},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
        {"names": ["sendmmsg"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 3, "value": 0, "op": "SCMP_CMP_EQ"},
                  {"index": 3, "value": 64, "op": "SCMP_CMP_EQ"}]}
    ]
}"#;

fn names_with(seccomp: &Json, action: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in seccomp.get("syscalls").unwrap().as_array().unwrap() {
        if e.get("action").unwrap().as_str() == Some(action) {
            for n in e.get("names").unwrap().as_array().unwrap() {
                out.push(n.as_str().unwrap().to_owned());
            }
        }
    }
    out
}

fn unconditional(seccomp: &Json, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in seccomp.get("syscalls").unwrap().as_array().unwrap() {
        let named = e
            .get("names")
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str() == Some(name));
        if named && e.get("args").is_none() {
            out.push(e.get("action").unwrap().as_str().unwrap().to_owned());
        }
    }
    out
}

#[test]
fn issue_4_merge_into_an_allowing_profile() {
    for (name, p) in all_policies() {
        let patched = patch(&config(Some(ALLOW_PROFILE)), &p).unwrap();
        assert!(patched.merged);
        let merged = seccomp_of(&patched.text);
        let original = Json::parse(ALLOW_PROFILE).unwrap();
        // Theirs kept: flags, default; ours: listener, metadata, native arch only.
        assert_eq!(merged.get("flags"), original.get("flags"));
        assert_eq!(merged.get("listenerPath").unwrap().as_str(), Some(LISTENER));
        assert_eq!(
            merged.get("architectures").unwrap().as_array().unwrap(),
            [Json::str(native_architecture().unwrap())]
        );
        // Their unconditional refusal of connect wins over our notification.
        assert_eq!(unconditional(&merged, "connect"), ["SCMP_ACT_ERRNO"]);
        assert!(!names_with(&merged, "SCMP_ACT_NOTIFY").contains(&"connect".into()));
        assert!(names_with(&merged, "SCMP_ACT_ERRNO").contains(&"mount".into()));
        // Their allowing ptrace (the default anyway) gives way to our refusal.
        assert_eq!(unconditional(&merged, "ptrace"), ["SCMP_ACT_ERRNO"]);
        assert_eq!(unconditional(&merged, "getpid"), ["SCMP_ACT_ALLOW"]);
        // Their unconditional LOG of socket is narrowed to what we allow.
        assert!(unconditional(&merged, "socket").is_empty(), "{name}");
        let logged = names_with(&merged, "SCMP_ACT_LOG").contains(&"socket".into());
        assert_eq!(logged, name != "nosock", "{name}"); // nosock refuses every socket
                                                        // Their conditional refusal of bind stays; our notification covers the rest.
        assert!(names_with(&merged, "SCMP_ACT_NOTIFY").contains(&"bind".into()));
        check_merge_semantics(&original, &merged, &p);
    }
}

#[test]
fn issue_4_merge_into_a_refusing_profile() {
    for (name, p) in all_policies() {
        let patched = patch(&config(Some(DENY_PROFILE)), &p).unwrap();
        let merged = seccomp_of(&patched.text);
        let original = Json::parse(DENY_PROFILE).unwrap();
        assert_eq!(merged.get("defaultErrnoRet").unwrap().as_u64(), Some(1));
        // Our notification replaces their unconditional allow.
        for call in ["connect", "bind", "listen", "sendmsg"] {
            assert_eq!(unconditional(&merged, call), ["SCMP_ACT_NOTIFY"], "{call}");
        }
        // They do not allow unshare, setns or ptrace at all: those stay refused by
        // their default, and no rule of ours is left for them.
        for call in ["unshare", "setns", "ptrace", "io_uring_setup"] {
            assert!(
                !names_with(&merged, "SCMP_ACT_ERRNO").contains(&call.into()),
                "{name}: {call}"
            );
        }
        // clone: their masked allow already excludes the namespace bits; it stays.
        let clone_allow = names_with(&merged, "SCMP_ACT_ALLOW");
        assert!(clone_allow.contains(&"clone".into()));
        assert_eq!(unconditional(&merged, "clone3"), ["SCMP_ACT_ERRNO"]);
        // socket: allowed only where our allow-list allows, by positive rules.
        assert!(unconditional(&merged, "socket").is_empty());
        assert_eq!(
            clone_allow.contains(&"socket".into()),
            name != "nosock",
            "{name}"
        );
        check_merge_semantics(&original, &merged, &p);
    }
}

#[test]
fn issue_4_one_agent_per_container() {
    let p = policy(netjail_policy::builtin("deny-all").unwrap());
    let theirs = r#"{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/other.sock",
        "syscalls": [{"names": ["mknod"], "action": "SCMP_ACT_NOTIFY"}]}"#;
    let e = patch(&config(Some(theirs)), &p).unwrap_err();
    assert!(matches!(e, OciError::OtherAgent { .. }), "{e}");
    assert!(e.to_string().contains("/run/other.sock"), "{e}");
    // Notifications without a listener are not a valid profile.
    let theirs = r#"{"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mknod"], "action": "SCMP_ACT_NOTIFY"}]}"#;
    let e = patch(&config(Some(theirs)), &p).unwrap_err();
    assert!(e.to_string().contains("need a listenerPath"), "{e}");
    // Our own listener (an object of `netjail oci seccomp` pasted in): ours replace it.
    let pasted = seccomp_object(&p, "old", LISTENER).unwrap().to_compact();
    let merged = seccomp_of(&patch(&config(Some(&pasted)), &p).unwrap().text);
    let fresh = seccomp_of(&patch(&config(None), &p).unwrap().text);
    // The same calls notified (the pasted refusals, MSG_ZEROCOPY on sendto, may split ours
    // into several entries; check_merge_semantics checks they decide the same).
    let calls = |j: &Json| {
        let mut names = names_with(j, "SCMP_ACT_NOTIFY");
        names.dedup();
        names
    };
    assert_eq!(calls(&merged), calls(&fresh));
    check_merge_semantics(&Json::parse(&pasted).unwrap(), &merged, &p);
}

#[test]
fn issue_4_patch_errors() {
    let p = policy(netjail_policy::builtin("deny-all").unwrap());
    let e = patch("{\n  \"ociVersion\": \"1\",\n  \"process\": {,\n}", &p).unwrap_err();
    assert_eq!(e.to_string(), "config.json:3:15: key must be a string");
    for (text, what) in [
        ("[1, 2]", "the document"),
        ("{\"linux\": 5}", "linux"),
        ("{\"process\": []}", "process"),
        ("{\"annotations\": \"x\"}", "annotations"),
    ] {
        let e = patch(text, &p).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("config.json: {what} is not a JSON object")
        );
    }
    let bad = [
        (r#"{"syscalls": []}"#, "defaultAction missing"),
        (
            r#"{"defaultAction": "SCMP_ACT_ALLOWED"}"#,
            "unknown action `SCMP_ACT_ALLOWED`",
        ),
        (
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]}"#,
            "syscalls[0]: names must be a non-empty array",
        ),
        (
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["a"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
            "syscalls[0]: args index must be 0 to 5",
        ),
        (
            r#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#,
            "cannot be the default",
        ),
    ];
    for (theirs, message) in bad {
        let e = patch(&config(Some(theirs)), &p).unwrap_err();
        assert!(
            e.to_string().starts_with("config.json: linux.seccomp: ")
                && e.to_string().contains(message),
            "{e}"
        );
    }
    let annotated = "{\"annotations\": {\"org.netjail.original-seccomp\": 3}}";
    let e = patch(annotated, &p).unwrap_err();
    assert!(
        e.to_string().contains("original-seccomp\": not a string"),
        "{e}"
    );
}

#[test]
fn issue_4_patch_file_errors_and_writes_in_place() {
    let dir = std::env::temp_dir().join(format!("netjail-oci-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("missing.json");
    let e = patch_file(&missing, "deny-all", LISTENER).unwrap_err();
    assert!(matches!(e, OciError::Read { .. }), "{e}");
    assert!(e.to_string().starts_with("cannot read "), "{e}");
    let bad_policy = dir.join("bad.toml");
    std::fs::write(&bad_policy, "name = \"x\"\n[[allow]]\nconect = []\n").unwrap();
    let path = dir.join("config.json");
    std::fs::write(&path, config(None)).unwrap();
    let e = patch_file(&path, bad_policy.to_str().unwrap(), LISTENER).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:3:1: unknown key `conect`; did you mean `connect`?",
            bad_policy.display()
        )
    );
    let e = patch_file(&path, "no-such-policy", LISTENER).unwrap_err();
    assert!(e.to_string().starts_with("no built-in policy"), "{e}");
    let patched = patch_file(&path, "loopback-only", LISTENER).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), patched.text);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
