//! What the in-kernel part of the confinement costs a system call that never leaves the kernel:
//! the seccomp filter as loaded in a confined process (read back with
//! `PTRACE_SECCOMP_GET_FILTER`), run here on a given call by a classic-BPF interpreter that
//! counts the instructions executed, plus the kernel's own shortcut.
//!
//! The shortcut (Linux 5.11, `seccomp_cache_prepare`): when a filter returns `ALLOW` for a
//! system call number whatever its arguments, the kernel records it in a bitmap and never runs
//! the filter for that number again. [`const_allow`] repeats the kernel's test
//! (`seccomp_is_const_allow`): the program may only load `nr` and `arch`, and must reach
//! `RET ALLOW`. `write`/`read`/`recvfrom` are cached; `sendto` is not (the filter looks at its
//! destination argument), so each `send()` runs the filter.

/// `offsetof(struct seccomp_data, nr)`, `arch`, `args`.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARGS: usize = 16;
/// `sizeof(struct seccomp_data)`.
const DATA_LEN: usize = 64;

const SECCOMP_RET_ACTION_FULL: u32 = 0xffff_0000;
const SECCOMP_RET_DATA: u32 = 0x0000_ffff;

/// One call as the filter sees it.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    /// A label for the table.
    pub label: &'static str,
    /// System call number.
    pub nr: i64,
    /// The six arguments.
    pub args: [u64; 6],
}

/// What the filter answered and how much it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The returned action, decoded: `allow`, `notify`, `errno N`, `kill`, ...
    pub action: String,
    /// Instructions executed.
    pub steps: usize,
    /// True when the kernel skips the filter for this number (constant `ALLOW`).
    pub cached: bool,
}

/// Decodes a seccomp return value.
pub fn action_name(ret: u32) -> String {
    match ret & SECCOMP_RET_ACTION_FULL {
        0x7fff_0000 => "allow".into(),
        0x7fc0_0000 => "notify".into(),
        0x0005_0000 => format!("errno {}", ret & SECCOMP_RET_DATA),
        0x7ffc_0000 => "log".into(),
        0x7ff0_0000 => "trace".into(),
        0x0003_0000 => "trap".into(),
        0x8000_0000 => "kill process".into(),
        0x0000_0000 => "kill thread".into(),
        other => format!("action {other:#x}"),
    }
}

fn seccomp_data(call: &Call, arch: u32) -> [u8; DATA_LEN] {
    let mut data = [0u8; DATA_LEN];
    data[0..4].copy_from_slice(&(call.nr as i32).to_ne_bytes());
    data[4..8].copy_from_slice(&arch.to_ne_bytes());
    for (i, a) in call.args.iter().enumerate() {
        let at = OFF_ARGS + 8 * i;
        data[at..at + 8].copy_from_slice(&a.to_ne_bytes());
    }
    data
}

/// The accumulator after the ALU instruction `code` with operand `src`; `None` for an opcode
/// that is not one.
fn alu(code: u32, a: u32, src: u32) -> Option<u32> {
    Some(match code & 0xf0 {
        libc::BPF_ADD => a.wrapping_add(src),
        libc::BPF_SUB => a.wrapping_sub(src),
        libc::BPF_MUL => a.wrapping_mul(src),
        libc::BPF_DIV => a.checked_div(src).unwrap_or(0),
        libc::BPF_MOD => a.checked_rem(src).unwrap_or(0),
        libc::BPF_OR => a | src,
        libc::BPF_AND => a & src,
        libc::BPF_XOR => a ^ src,
        libc::BPF_LSH => a.checked_shl(src).unwrap_or(0),
        libc::BPF_RSH => a.checked_shr(src).unwrap_or(0),
        libc::BPF_NEG => a.wrapping_neg(),
        _ => return None,
    })
}

/// Runs `prog` on `call` like the kernel's classic-BPF interpreter (all opcodes seccomp
/// accepts); `None` if the program is malformed (a jump or a load out of bounds, no return).
pub fn run(prog: &[libc::sock_filter], call: &Call, arch: u32) -> Option<Outcome> {
    let data = seccomp_data(call, arch);
    let (mut a, mut x) = (0u32, 0u32);
    let mut mem = [0u32; 16];
    let mut pc = 0usize;
    let mut steps = 0usize;
    let word = |k: u32| -> Option<u32> {
        let at = k as usize;
        (at & 3 == 0 && at + 4 <= DATA_LEN)
            .then(|| u32::from_ne_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]))
    };
    loop {
        let insn = prog.get(pc)?;
        steps += 1;
        pc += 1;
        let code = u32::from(insn.code);
        let k = insn.k;
        let class = code & 0x07;
        match class {
            libc::BPF_LD | libc::BPF_LDX => {
                let value = match code & 0xe0 {
                    libc::BPF_ABS => word(k)?,
                    libc::BPF_LEN => DATA_LEN as u32,
                    libc::BPF_IMM => k,
                    libc::BPF_MEM => *mem.get(k as usize)?,
                    _ => return None,
                };
                if class == libc::BPF_LD {
                    a = value;
                } else {
                    x = value;
                }
            }
            libc::BPF_ST => *mem.get_mut(k as usize)? = a,
            libc::BPF_STX => *mem.get_mut(k as usize)? = x,
            libc::BPF_ALU => {
                let src = if code & libc::BPF_X != 0 { x } else { k };
                a = alu(code, a, src)?;
            }
            libc::BPF_JMP => {
                let src = if code & libc::BPF_X != 0 { x } else { k };
                let taken = match code & 0xf0 {
                    libc::BPF_JA => {
                        pc += k as usize;
                        continue;
                    }
                    libc::BPF_JEQ => a == src,
                    libc::BPF_JGT => a > src,
                    libc::BPF_JGE => a >= src,
                    libc::BPF_JSET => a & src != 0,
                    _ => return None,
                };
                pc += usize::from(if taken { insn.jt } else { insn.jf });
            }
            libc::BPF_RET => {
                let ret = match code & 0x18 {
                    libc::BPF_K => k,
                    libc::BPF_A => a,
                    _ => return None,
                };
                return Some(Outcome {
                    action: action_name(ret),
                    steps,
                    cached: const_allow(prog, call.nr, arch),
                });
            }
            libc::BPF_MISC => match code & 0xf8 {
                libc::BPF_TAX => x = a,
                libc::BPF_TXA => a = x,
                _ => return None,
            },
            _ => return None,
        }
    }
}

/// The kernel's `seccomp_is_const_allow`: true when `prog` answers `ALLOW` for `nr` on `arch`
/// without looking at anything else, so that the kernel never runs it for that number.
pub fn const_allow(prog: &[libc::sock_filter], nr: i64, arch: u32) -> bool {
    let mut reg = 0u32;
    let mut pc = 0usize;
    while let Some(insn) = prog.get(pc) {
        let code = u32::from(insn.code);
        let k = insn.k;
        match code {
            c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                reg = match k {
                    OFF_NR => nr as u32,
                    OFF_ARCH => arch,
                    _ => return false,
                }
            }
            c if c == libc::BPF_RET | libc::BPF_K => return k == libc::SECCOMP_RET_ALLOW,
            c if c == libc::BPF_JMP | libc::BPF_JA => pc += k as usize,
            c if c & 0x07 == libc::BPF_JMP && c & libc::BPF_X == 0 => {
                let taken = match c & 0xf0 {
                    libc::BPF_JEQ => reg == k,
                    libc::BPF_JGE => reg >= k,
                    libc::BPF_JGT => reg > k,
                    libc::BPF_JSET => reg & k != 0,
                    _ => return false,
                };
                pc += usize::from(if taken { insn.jt } else { insn.jf });
            }
            c if c == libc::BPF_ALU | libc::BPF_AND | libc::BPF_K => reg &= k,
            _ => return false,
        }
        pc += 1;
    }
    false
}

/// The calls the cost bench makes in its timed loops, and `sendmsg` for contrast.
pub fn bench_calls() -> Vec<Call> {
    const FD: u64 = 3;
    const BUF: u64 = 0x7fff_0000_1000;
    let call = |label, nr, args| Call { label, nr, args };
    vec![
        call("write (pipe)", libc::SYS_write, [FD, BUF, 1, 0, 0, 0]),
        call("read (pipe)", libc::SYS_read, [FD, BUF, 1, 0, 0, 0]),
        call("getppid", libc::SYS_getppid, [0; 6]),
        call(
            "send = sendto(.., NULL, 0)",
            libc::SYS_sendto,
            [FD, BUF, 65536, libc::MSG_NOSIGNAL as u64, 0, 0],
        ),
        call(
            "recv = recvfrom",
            libc::SYS_recvfrom,
            [FD, BUF, 65536, 0, 0, 0],
        ),
        call(
            "sendto(.., dest)",
            libc::SYS_sendto,
            [FD, BUF, 64, 0, BUF + 4096, 16],
        ),
        call("sendmsg", libc::SYS_sendmsg, [FD, BUF, 0, 0, 0, 0]),
        call("connect", libc::SYS_connect, [FD, BUF, 16, 0, 0, 0]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn insn(code: u32, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
        libc::sock_filter {
            code: code as u16,
            jt,
            jf,
            k,
        }
    }

    const LD: u32 = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    const JEQ: u32 = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    const RET: u32 = libc::BPF_RET | libc::BPF_K;
    const ARCH: u32 = 0xC000_003E;

    /// arch check; sendto with arg 4 (low half) != 0 -> notify; else allow.
    fn prog() -> Vec<libc::sock_filter> {
        vec![
            insn(LD, 0, 0, OFF_ARCH),
            insn(JEQ, 1, 0, ARCH),
            insn(RET, 0, 0, 0x8000_0000),
            insn(LD, 0, 0, OFF_NR),
            insn(JEQ, 0, 3, 44),
            insn(LD, 0, 0, 16 + 8 * 4),
            insn(JEQ, 1, 0, 0),
            insn(RET, 0, 0, libc::SECCOMP_RET_USER_NOTIF),
            insn(RET, 0, 0, libc::SECCOMP_RET_ALLOW),
        ]
    }

    #[test]
    fn counts_steps_and_decodes() {
        let p = prog();
        let write = Call {
            label: "w",
            nr: 1,
            args: [0; 6],
        };
        let out = run(&p, &write, ARCH).unwrap();
        assert_eq!(out.action, "allow");
        assert_eq!(out.steps, 5);
        assert!(out.cached);
        let send_null = Call {
            label: "s",
            nr: 44,
            args: [0; 6],
        };
        let out = run(&p, &send_null, ARCH).unwrap();
        assert_eq!(
            (out.action.as_str(), out.steps, out.cached),
            ("allow", 7, false)
        );
        let send_dest = Call {
            label: "d",
            nr: 44,
            args: [0, 0, 0, 0, 0x1000, 0],
        };
        assert_eq!(run(&p, &send_dest, ARCH).unwrap().action, "notify");
        let other = run(&p, &write, 3).unwrap();
        assert_eq!((other.action.as_str(), other.steps), ("kill process", 3));
        assert!(!other.cached);
    }

    #[test]
    fn malformed_is_none() {
        let p = vec![insn(LD, 0, 0, 200)];
        let c = Call {
            label: "x",
            nr: 0,
            args: [0; 6],
        };
        assert!(run(&p, &c, ARCH).is_none());
        assert!(run(&[insn(JEQ, 5, 5, 0)], &c, ARCH).is_none());
    }
}
