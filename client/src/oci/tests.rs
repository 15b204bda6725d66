//! Unit tests of the OCI object, the merge and the patch.

use super::*;
use crate::filter::tests::RICH_POLICIES;

const LISTENER: &str = "/run/netjail/oci.sock";

fn policy(src: &str) -> Policy {
    Policy::from_toml(src, "test").unwrap()
}

/// Every built-in policy and the rich ones of the filter's tests.
fn all_policies() -> Vec<(String, Policy)> {
    netjail_policy::builtin_names()
        .iter()
        .map(|n| (n.to_string(), policy(netjail_policy::builtin(n).unwrap())))
        .chain(
            RICH_POLICIES
                .iter()
                .map(|(n, s)| (n.to_string(), policy(s))),
        )
        .collect()
}

fn same(a: &filter::Program, b: &filter::Program) -> bool {
    a.instructions.len() == b.instructions.len()
        && a.instructions
            .iter()
            .zip(&b.instructions)
            .all(|(x, y)| (x.code, x.jt, x.jf, x.k) == (y.code, y.jt, y.jf, y.k))
}

// -- a classic BPF interpreter, enough for libseccomp's programs ---------------------------

const RET_KILL_THREAD: u32 = 0;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ALLOW: u32 = 0x7fff_0000;
const RET_NOTIFY: u32 = 0x7fc0_0000;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;

fn native_audit_arch() -> u32 {
    match ScmpArch::native() {
        ScmpArch::X8664 => 0xc000_003e,
        ScmpArch::Aarch64 => 0xc000_00b7,
        other => panic!("no audit arch for {other:?}"),
    }
}

fn run_bpf(prog: &filter::Program, arch: u32, nr: i32, args: &[u64; 6]) -> u32 {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_ne_bytes());
    data[4..8].copy_from_slice(&arch.to_ne_bytes());
    for (i, a) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
    }
    let word = |k: u32| {
        let k = k as usize;
        u32::from_ne_bytes([data[k], data[k + 1], data[k + 2], data[k + 3]])
    };
    let (mut a, mut x, mut mem) = (0u32, 0u32, [0u32; 16]);
    let mut pc = 0usize;
    loop {
        let i = prog.instructions[pc];
        pc += 1;
        let jump = |cond: bool| if cond { i.jt as usize } else { i.jf as usize };
        match i.code {
            0x20 => a = word(i.k),            // ld [k]
            0x00 => a = i.k,                  // ld #k
            0x01 => x = i.k,                  // ldx #k
            0x60 => a = mem[i.k as usize],    // ld M[k]
            0x61 => x = mem[i.k as usize],    // ldx M[k]
            0x02 => mem[i.k as usize] = a,    // st M[k]
            0x03 => mem[i.k as usize] = x,    // stx M[k]
            0x54 => a &= i.k,                 // and #k
            0x44 => a |= i.k,                 // or #k
            0x07 => x = a,                    // tax
            0x87 => a = x,                    // txa
            0x05 => pc += i.k as usize,       // ja
            0x15 => pc += jump(a == i.k),     // jeq #k
            0x25 => pc += jump(a > i.k),      // jgt #k
            0x35 => pc += jump(a >= i.k),     // jge #k
            0x45 => pc += jump(a & i.k != 0), // jset #k
            0x1d => pc += jump(a == x),       // jeq x
            0x2d => pc += jump(a > x),        // jgt x
            0x3d => pc += jump(a >= x),       // jge x
            0x06 => return i.k,               // ret #k
            0x16 => return a,                 // ret a
            code => panic!("BPF opcode {code:#x} not simulated"),
        }
    }
}

fn nr(name: &str) -> i32 {
    ScmpSyscall::from_name(name).unwrap().as_raw_syscall()
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

/// Argument values worth trying for calls compared with `cmps`: each constant, its
/// neighbours, with and without high garbage, and a few extremes.
fn pools(cmps: &[ArgCmp]) -> [Vec<u64>; 6] {
    let mut pools: [Vec<u64>; 6] = Default::default();
    for p in pools.iter_mut() {
        p.extend([0, 1, 2, 8, u64::MAX, 1 << 32, 0xffff_ffff]);
    }
    for c in cmps {
        let mut values = vec![c.value];
        if let CmpOp::MaskedEq(m) = c.op {
            values.extend([m, !m, c.value | !m, c.value ^ m]);
        }
        for v in values {
            pools[c.index as usize].extend([
                v,
                v.wrapping_add(1),
                v.wrapping_sub(1),
                v | (0xdead_u64 << 40),
                v ^ 0xf,
            ]);
        }
    }
    pools
}

fn sample(rng: &mut Rng, pools: &[Vec<u64>; 6]) -> [u64; 6] {
    let mut args = [0u64; 6];
    for (i, a) in args.iter_mut().enumerate() {
        *a = match rng.next() % 8 {
            0 => rng.next(),
            1 => rng.next() & 0xffff,
            _ => *rng.pick(&pools[i]),
        };
    }
    args
}

fn ret_of(action: &ActionSpec) -> u32 {
    let errno = action.errno.unwrap_or(0) as u32 & 0xffff;
    match action.name.as_str() {
        "SCMP_ACT_ALLOW" => RET_ALLOW,
        "SCMP_ACT_LOG" => 0x7ffc_0000,
        "SCMP_ACT_ERRNO" => 0x0005_0000 | errno,
        "SCMP_ACT_TRACE" => 0x7ff0_0000 | errno,
        "SCMP_ACT_TRAP" => 0x0003_0000,
        "SCMP_ACT_KILL_PROCESS" => RET_KILL_PROCESS,
        "SCMP_ACT_NOTIFY" => RET_NOTIFY,
        _ => RET_KILL_THREAD,
    }
}

fn our_ret(action: Action) -> u32 {
    ret_of(&ActionSpec::ours(action))
}

fn all_match(args: &[ArgCmp], x: &[u64; 6]) -> bool {
    args.iter().all(|c| c.matches(x[c.index as usize]))
}

/// What the merge promises for one call: the profile's refusals, then netjail's rules,
/// then the profile's allow rules or default. Returns every acceptable return value.
fn promised(theirs: &Profile, ours: &[Rule], call: &str, x: &[u64; 6]) -> Vec<u32> {
    let rules: Vec<&ProfileRule> = theirs
        .rules
        .iter()
        .filter(|r| r.name == call && r.action.class() != Class::Notifies)
        .filter(|r| all_match(&r.args, x))
        .collect();
    let refusing: Vec<u32> = rules
        .iter()
        .filter(|r| r.action.class() == Class::Refuses)
        .map(|r| ret_of(&r.action))
        .collect();
    if !refusing.is_empty() {
        return refusing;
    }
    let allowing: Vec<u32> = rules.iter().map(|r| ret_of(&r.action)).collect();
    if allowing.is_empty() && theirs.default.class() != Class::Allows {
        return vec![ret_of(&theirs.default)]; // netjail's rules do not reach here
    }
    let mine: Vec<u32> = ours
        .iter()
        .filter(|r| r.syscall == call && r.matches(x))
        .map(|r| our_ret(r.action))
        .collect();
    if !mine.is_empty() {
        return mine;
    }
    if !allowing.is_empty() {
        return allowing;
    }
    vec![ret_of(&theirs.default)]
}

/// Runs the merged object's program (as a runtime builds it) against the promise, on
/// many calls of every system call either side names.
fn check_merge_semantics(original: &Json, merged: &Json, policy: &Policy) {
    let theirs = Profile::parse(original).unwrap();
    let ours = filter::rules(policy).unwrap();
    let ctx = runtime_context(merged, Some(ScmpAction::KillProcess)).unwrap();
    let prog = filter::export(&ctx).unwrap();
    let mut calls: Vec<String> = ours.iter().map(|r| r.syscall.to_owned()).collect();
    calls.extend(theirs.rules.iter().map(|r| r.name.clone()));
    calls.extend(["read".to_owned(), "mount".to_owned()]);
    calls.sort();
    calls.dedup();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let arch = native_audit_arch();
    for call in calls {
        // Names of other architectures (socketcall) resolve to negative pseudo-numbers.
        let Some(n) = ScmpSyscall::from_name(&call)
            .ok()
            .filter(|n| n.as_raw_syscall() >= 0)
        else {
            continue;
        };
        let mut cmps: Vec<ArgCmp> = ours
            .iter()
            .filter(|r| r.syscall == call)
            .flat_map(|r| r.args.clone())
            .collect();
        cmps.extend(
            theirs
                .rules
                .iter()
                .filter(|r| r.name == call)
                .flat_map(|r| r.args.clone()),
        );
        let pools = pools(&cmps);
        for _ in 0..2500 {
            let x = sample(&mut rng, &pools);
            let got = run_bpf(&prog, arch, n.as_raw_syscall(), &x);
            let want = promised(&theirs, &ours, &call, &x);
            assert!(
                want.contains(&got),
                "{call}{x:x?}: program returns {got:#x}, the merge promises {want:x?}"
            );
        }
    }
}

// -- netjail's object ---------------------------------------------------------------------

/// The object, read back and built as a runtime builds it, compiles to exactly the
/// program `netjail run` loads (with the same bad-arch action): nothing is lost on the
/// way through JSON.
#[test]
fn issue_4_object_compiles_to_the_run_program() {
    for (name, p) in all_policies() {
        let object = seccomp_object(&p, &name, LISTENER).unwrap();
        let text = object.to_string();
        let back = Json::parse(&text).unwrap();
        assert_eq!(back, object);
        let ctx = runtime_context(&back, Some(ScmpAction::KillProcess)).unwrap();
        let from_json = filter::export(&ctx).unwrap();
        let direct = filter::compile(&p).unwrap();
        assert!(same(&from_json, &direct), "{name}: programs differ");
    }
}

/// runc lays the same rules out as a binary tree (more than 32 entries) and keeps
/// libseccomp's bad-arch action (kill the thread): the decisions are the same for the
/// native architecture, and a foreign one is killed either way.
#[test]
fn issue_4_runc_layout_decides_the_same() {
    let arch = native_audit_arch();
    let mut rng = Rng(7);
    for (name, p) in all_policies() {
        let object = seccomp_object(&p, &name, LISTENER).unwrap();
        let entries = object.get("syscalls").unwrap().as_array().unwrap().len();
        assert!(entries > 32, "{name}: {entries} entries");
        let mut ctx = runtime_context(&object, None).unwrap();
        ctx.set_ctl_optimize(2).unwrap();
        let runc = filter::export(&ctx).unwrap();
        let ours = filter::compile(&p).unwrap();
        assert!(!same(&runc, &ours));
        let rules = filter::rules(&p).unwrap();
        let mut calls: Vec<&str> = rules.iter().map(|r| r.syscall).collect();
        calls.extend(["read", "write", "openat", "mount", "accept4"]);
        calls.dedup();
        for call in calls {
            let cmps: Vec<ArgCmp> = rules
                .iter()
                .filter(|r| r.syscall == call)
                .flat_map(|r| r.args.clone())
                .collect();
            let pools = pools(&cmps);
            for _ in 0..1500 {
                let x = sample(&mut rng, &pools);
                let a = run_bpf(&runc, arch, nr(call), &x);
                let b = run_bpf(&ours, arch, nr(call), &x);
                assert_eq!(a, b, "{name}: {call}{x:x?}");
                let want = rules
                    .iter()
                    .find(|r| r.syscall == call && r.matches(&x))
                    .map_or(RET_ALLOW, |r| our_ret(r.action));
                assert_eq!(b, want, "{name}: {call}{x:x?}");
            }
        }
        let x = [0; 6];
        assert_eq!(run_bpf(&runc, AUDIT_ARCH_I386, 3, &x), RET_KILL_THREAD);
        assert_eq!(run_bpf(&ours, AUDIT_ARCH_I386, 3, &x), RET_KILL_PROCESS);
    }
}

#[test]
fn issue_4_object_fields() {
    let p = policy(netjail_policy::builtin("loopback-only").unwrap());
    let object = seccomp_object(&p, "loopback-only", "/run/x.sock").unwrap();
    assert_eq!(
        object.get("defaultAction").unwrap().as_str(),
        Some("SCMP_ACT_ALLOW")
    );
    let arch = object.get("architectures").unwrap().as_array().unwrap();
    assert_eq!(arch, [Json::str(native_architecture().unwrap())]);
    assert_eq!(
        object.get("listenerPath").unwrap().as_str(),
        Some("/run/x.sock")
    );
    let metadata = object.get("listenerMetadata").unwrap().as_str().unwrap();
    assert_eq!(
        metadata,
        format!("policy=loopback-only fingerprint={}", p.fingerprint())
    );
    assert!(object.get("flags").is_none());
    let entries = object.get("syscalls").unwrap().as_array().unwrap();
    let names = |e: &Json| -> Vec<String> {
        e.get("names")
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_owned())
            .collect()
    };
    // The notified calls in one entry; write never notified.
    let first = &entries[0];
    assert_eq!(
        names(first),
        ["connect", "bind", "listen", "sendmsg", "sendmmsg"]
    );
    assert_eq!(
        first.get("action").unwrap().as_str(),
        Some("SCMP_ACT_NOTIFY")
    );
    assert!(first.get("errnoRet").is_none() && first.get("args").is_none());
    for e in entries {
        let notify = e.get("action").unwrap().as_str() == Some("SCMP_ACT_NOTIFY");
        assert!(!(notify && names(e).iter().any(|n| n == "write")));
    }
    // MASKED_EQ: value is the mask, valueTwo the datum (seccomp's NEW_LISTENER flag).
    let seccomp = entries.iter().find(|e| names(e) == ["seccomp"]).unwrap();
    let flags = &seccomp.get("args").unwrap().as_array().unwrap()[1];
    assert_eq!(
        flags.get("op").unwrap().as_str(),
        Some("SCMP_CMP_MASKED_EQ")
    );
    assert_eq!(flags.get("value").unwrap().as_u64(), Some(8));
    assert_eq!(flags.get("valueTwo").unwrap().as_u64(), Some(8));
    assert_eq!(
        seccomp.get("errnoRet").unwrap().as_u64(),
        Some(libc::EPERM as u64)
    );
    // socket and socketpair refuse the same families: one entry each family.
    assert!(entries.iter().any(|e| names(e) == ["socket", "socketpair"]));
}

/// D1, C2, C3: as the launcher's filter, the object sends the broker every `socket()` of a
/// family the policy does not list (`SCMP_ACT_NOTIFY`), and the broker answers with the
/// policy's `[sockets] refuse` (`EPERM` for `disablenetwork`, `EAFNOSUPPORT` for the others)
/// and writes it in the audit; a listed family is not in the object. `allow-all`'s object
/// lets every family through and sends the broker only netlink route sockets, which it makes.
#[test]
fn s_d1_object_sends_refused_sockets_to_the_broker() {
    let entries_of = |name: &str| {
        let p = policy(netjail_policy::builtin(name).unwrap());
        let object = seccomp_object(&p, name, LISTENER).unwrap();
        object.get("syscalls").unwrap().as_array().unwrap().to_vec()
    };
    // The action of the socket entry whose only argument is `family == value`.
    let family_action = |entries: &[Json], family: i32| -> Option<String> {
        entries.iter().find_map(|e| {
            let names = e.get("names")?.as_array()?;
            if !names.iter().any(|n| n.as_str() == Some("socket")) {
                return None;
            }
            let args = e.get("args")?.as_array()?;
            let [arg] = args else { return None };
            let equal = arg.get("op")?.as_str() == Some("SCMP_CMP_EQ")
                && arg.get("index")?.as_u64() == Some(0)
                && arg.get("value")?.as_u64() == Some(family as u64);
            equal.then(|| e.get("action")?.as_str().map(str::to_owned))?
        })
    };
    let notify = Some("SCMP_ACT_NOTIFY".to_owned());
    let dn = entries_of("disablenetwork");
    for family in [
        libc::AF_INET,
        libc::AF_INET6,
        libc::AF_PACKET,
        libc::AF_NETLINK,
    ] {
        assert_eq!(family_action(&dn, family), notify, "{family}");
    }
    assert_eq!(family_action(&dn, libc::AF_UNIX), None);
    let jail = entries_of("jail");
    assert_eq!(family_action(&jail, libc::AF_PACKET), notify);
    assert_eq!(family_action(&jail, libc::AF_INET), None);
    // No socket entry refuses anything in the kernel: every refusal is the broker's.
    for name in ["disablenetwork", "jail", "loopback-only", "allow-all"] {
        for e in entries_of(name) {
            let names = e.get("names").unwrap().as_array().unwrap();
            if names.iter().any(|n| n.as_str() == Some("socket")) {
                assert_eq!(
                    e.get("action").unwrap().as_str(),
                    Some("SCMP_ACT_NOTIFY"),
                    "{name}: {e:?}"
                );
            }
        }
    }
    let all = entries_of("allow-all");
    for family in [libc::AF_PACKET, libc::AF_VSOCK, libc::AF_NETLINK, 45] {
        assert_eq!(family_action(&all, family), None, "allow-all {family}");
    }
    let route = all
        .iter()
        .filter(|e| {
            let names = e.get("names").unwrap().as_array().unwrap();
            names.iter().any(|n| n.as_str() == Some("socket"))
        })
        .count();
    assert!(
        route >= 1,
        "allow-all sends netlink route sockets to the broker"
    );
}

#[test]
fn issue_4_policy_label() {
    assert_eq!(policy_label("loopback-only").unwrap(), "loopback-only");
    assert_eq!(
        policy_label("/etc/netjail/policies/web_1.toml").unwrap(),
        "web_1"
    );
    assert_eq!(policy_label("web.client.toml").unwrap(), "web.client");
    for bad in ["my policy.toml", "a=b.toml", "/", ""] {
        let e = policy_label(bad).unwrap_err();
        assert!(matches!(e, OciError::PolicyName(_)), "{bad}: {e}");
    }
}

#[test]
fn issue_4_json_keeps_key_order_and_last_duplicate() {
    let text = "{\"z\": 1, \"a\": {\"y\": [true, null, 1.5, -2], \"b\": \"s\"}, \"z\": 2}";
    let j = Json::parse(text).unwrap();
    assert_eq!(
        j.to_compact(),
        "{\"z\":2,\"a\":{\"y\":[true,null,1.5,-2],\"b\":\"s\"}}"
    );
    assert_eq!(Json::parse(&j.to_pretty(b"\t")).unwrap(), j);
}

// -- regions ------------------------------------------------------------------------------

#[test]
fn issue_4_regions_are_exact() {
    let mut rng = Rng(42);
    let cmps = [
        ArgCmp::new(0, CmpOp::Gt, 63),
        ArgCmp::new(0, CmpOp::Lt, 5),
        ArgCmp::new(0, CmpOp::Le, 0x1_0000_0000),
        ArgCmp::new(0, CmpOp::Ge, u64::MAX - 3),
        ArgCmp::new(0, CmpOp::Ne, 0),
        ArgCmp::eq(0, 40),
        ArgCmp::masked_eq(0, 0xffff_ff01, 0x8b00),
        ArgCmp::masked_eq(0, 0xf, 0x10), // never matches
    ];
    let values = pools(&cmps);
    for c in &cmps {
        let blocks = cmp_blocks(c);
        for _ in 0..3000 {
            let v = sample(&mut rng, &values)[0];
            let hits = blocks.iter().filter(|b| v & b.mask == b.value).count();
            assert_eq!(hits, usize::from(c.matches(v)), "{c:?} {v:#x}");
        }
    }
    // a \ b and a & b partition a; coalescing keeps the set.
    let a = rule_cubes(&[ArgCmp::new(0, CmpOp::Le, 100), ArgCmp::new(1, CmpOp::Ne, 7)]);
    let b = rule_cubes(&[
        ArgCmp::masked_eq(0, 0xf0, 0x20),
        ArgCmp::new(2, CmpOp::Gt, 9),
    ]);
    let minus = coalesce(region_minus(a.clone(), &b));
    let both = region_and(&a, &b);
    let inside = |r: &[Cube], x: &[u64; 6]| {
        r.iter()
            .filter(|c| (0..6).all(|i| x[i] & c[i].mask == c[i].value))
            .count()
    };
    let pools = pools(&[
        ArgCmp::new(0, CmpOp::Le, 100),
        ArgCmp::new(1, CmpOp::Ne, 7),
        ArgCmp::masked_eq(0, 0xf0, 0x20),
        ArgCmp::new(2, CmpOp::Gt, 9),
    ]);
    for _ in 0..20000 {
        let x = sample(&mut rng, &pools);
        let (ia, ib) = (inside(&a, &x), inside(&b, &x));
        assert!(ia <= 1 && ib <= 1);
        assert_eq!(
            inside(&minus, &x),
            usize::from(ia == 1 && ib == 0),
            "{x:x?}"
        );
        assert_eq!(inside(&both, &x), usize::from(ia == 1 && ib == 1), "{x:x?}");
    }
    assert!(is_universe(&[UNIVERSE]));
    assert!(!is_universe(&rule_cubes(&[ArgCmp::new(3, CmpOp::Ne, 0)])));
    let halves = [
        rule_cubes(&[ArgCmp::new(3, CmpOp::Ne, 0)]),
        rule_cubes(&[ArgCmp::eq(3, 0)]),
    ];
    assert!(is_universe(&halves.concat()));
}

// -- the patch ----------------------------------------------------------------------------

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

/// F4, F5, L1, F14: the program `netjail run` loads and the OCI object refuse every unsafe
/// socket option the policy does not name, with garbage in the high halves of level and name
/// too, and `MSG_ZEROCOPY` in the flags of every send unless `SO_ZEROCOPY` is named; what
/// the policy names is left to the kernel (or the broker).
#[test]
fn f4_f5_l1_f14_unsafe_options_refused_in_program_and_object() {
    let arch = native_audit_arch();
    let eperm = 0x0005_0000 | libc::EPERM as u32;
    let deny = policy("name = \"d\"\n");
    let named = policy(
        "name = \"n\"\nallow_unsafe_sockopts = [\"SO_ZEROCOPY\", \"IPV6_RTHDR\", \
         \"SCTP_SOCKOPT_CONNECTX\"]\n",
    );
    for (p, label) in [(&deny, "d"), (&named, "n")] {
        let object = seccomp_object(p, label, LISTENER).unwrap();
        let ctx = runtime_context(&object, Some(ScmpAction::KillProcess)).unwrap();
        let progs = [filter::compile(p).unwrap(), filter::export(&ctx).unwrap()];
        for prog in &progs {
            let allowed = p.confinement().allow_unsafe_sockopts();
            for &(name, options) in netjail_policy::UNSAFE_SOCKOPTS {
                let want = if allowed.contains(&name) {
                    RET_ALLOW
                } else {
                    eperm
                };
                for &(level, opt) in options {
                    for high in [0u64, 0xdead_beef_0000_0000] {
                        let x = [3, high | level as u64, high | opt as u64, 0, 4, 0];
                        let got = run_bpf(prog, arch, nr("setsockopt"), &x);
                        assert_eq!(got, want, "{label}: setsockopt {name} {x:x?}");
                        let get = run_bpf(prog, arch, nr("getsockopt"), &x);
                        let sctp = level == libc::IPPROTO_SCTP;
                        assert_eq!(
                            get,
                            if sctp { want } else { RET_ALLOW },
                            "{label}: get {name}"
                        );
                    }
                }
            }
            // Neighbours stay the kernel's: IP_TTL, IPV6_V6ONLY, SO_REUSEADDR, SCTP_NODELAY.
            for (level, opt) in [(0, 2), (41, 26), (1, 2), (132, 3)] {
                let x = [3, level, opt, 0, 4, 0];
                assert_eq!(run_bpf(prog, arch, nr("setsockopt"), &x), RET_ALLOW);
            }
            // MSG_ZEROCOPY where the send stays in the kernel (sendto without a destination)
            // is refused here unless SO_ZEROCOPY is named; the sends the broker performs go
            // to it either way (it refuses MSG_ZEROCOPY itself).
            let zc = libc::MSG_ZEROCOPY as u64 | libc::MSG_DONTWAIT as u64;
            let in_kernel = if allowed.contains(&"SO_ZEROCOPY") {
                RET_ALLOW
            } else {
                eperm
            };
            for high in [0u64, 0xffff_ffff_0000_0000] {
                let x = [3u64, 0x1000, 1, high | zc, 0, 0];
                assert_eq!(run_bpf(prog, arch, nr("sendto"), &x), in_kernel, "{label}");
                let x = [3u64, 0x1000, 1, high | zc, 0x2000, 16];
                assert_eq!(run_bpf(prog, arch, nr("sendto"), &x), RET_NOTIFY, "{label}");
                let x = [3u64, 0x1000, high | zc, 0, 0, 0];
                assert_eq!(
                    run_bpf(prog, arch, nr("sendmsg"), &x),
                    RET_NOTIFY,
                    "{label}"
                );
            }
            let x = [3u64, 0x1000, 1, libc::MSG_DONTWAIT as u64, 0, 0];
            assert_eq!(run_bpf(prog, arch, nr("sendto"), &x), RET_ALLOW, "{label}");
        }
    }
}

/// The red team's filter findings, in the program `netjail run` loads and in the OCI object
/// alike: `CLONE_NEWNS` and the mount calls refused unless `"mount"` is granted (not by
/// `"user"`); the process calls notified for another pid, left to the kernel for pid 0, and
/// refused for a group or a user; `(AF_INET, SOCK_PACKET)` sent to the broker, which refuses
/// it as the `packet` family.
#[test]
fn rt_a_rt_b_filter_rules_in_program_and_object() {
    let arch = native_audit_arch();
    let eperm = 0x0005_0000 | libc::EPERM as u32;
    let user = policy("name = \"u\"\nnamespaces = [\"user\"]\n[sockets]\nallow = [\"inet:*\"]\n");
    let mount = policy("name = \"m\"\nnamespaces = [\"user\", \"mount\"]\n");
    let newns = libc::CLONE_NEWNS as u64;
    for (p, label, granted) in [(&user, "u", false), (&mount, "m", true)] {
        let object = seccomp_object(p, label, LISTENER).unwrap();
        let ctx = runtime_context(&object, Some(ScmpAction::KillProcess)).unwrap();
        let progs = [filter::compile(p).unwrap(), filter::export(&ctx).unwrap()];
        for prog in &progs {
            let ns = if granted { RET_ALLOW } else { eperm };
            let at = |call: &str, x: [u64; 6]| run_bpf(prog, arch, nr(call), &x);
            assert_eq!(at("unshare", [newns, 0, 0, 0, 0, 0]), ns, "{label}");
            assert_eq!(at("setns", [3, newns, 0, 0, 0, 0]), ns, "{label}");
            for &call in crate::hardening::MOUNT_SYSCALLS {
                assert_eq!(at(call, [0; 6]), ns, "{label}: {call}");
            }
            let limit = 0x7000_0000;
            assert_eq!(at("prlimit64", [0, 7, limit, 0, 0, 0]), RET_ALLOW);
            assert_eq!(at("prlimit64", [42, 7, limit, 0, 0, 0]), RET_NOTIFY);
            assert_eq!(at("sched_setaffinity", [42, 8, limit, 0, 0, 0]), RET_NOTIFY);
            assert_eq!(at("setpriority", [0, 0, 5, 0, 0, 0]), RET_ALLOW);
            assert_eq!(at("setpriority", [0, 42, 5, 0, 0, 0]), RET_NOTIFY);
            assert_eq!(at("setpriority", [2, 0, 5, 0, 0, 0]), eperm);
            assert_eq!(at("ioprio_set", [2, 0, 4, 0, 0, 0]), eperm);
            // `inet:*` without `packet`: the inet spelling of a packet socket goes to the
            // broker, which refuses it with the policy's errno and audits it.
            if label == "u" {
                assert_eq!(at("socket", [2, 10, 0x300, 0, 0, 0]), RET_NOTIFY);
                assert_eq!(at("socket", [2, 3, 1, 0, 0, 0]), RET_ALLOW);
            }
        }
    }
}
