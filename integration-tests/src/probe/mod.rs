//! The subcommands of the `nj-probe` binary.
//!
//! Every subcommand prints exactly one JSON line on stdout and returns exit status 0, unless it
//! could not run at all (bad arguments: status 2). Results of calls are reported as
//! `{"ok":true}` or `{"ok":false,"errno":N,"err":"ENAME"}`.
//!
//! | subcommand | what it does |
//! | --- | --- |
//! | `connect PROTO ADDR PORT [--nonblock] [--send]` | one TCP/UDP connect (and send) |
//! | `unix PATH`, `unix-abstract NAME` | one `AF_UNIX` stream connect |
//! | `flip ALLOWED DENIED N` | connect with a sockaddr another thread keeps rewriting (M1) |
//! | `flip ALLOWED DENIED N swap` | the same while a third thread `dup2`s over or closes the descriptor being connected (a bridge's ADDFD) |
//! | `io-uring [PORT]` | `io_uring_setup`, then an `IORING_OP_CONNECT` |
//! | `int80 PORT` | i386 `socketcall` through `int $0x80` |
//! | `second-listener PORT` | install an own seccomp listener that CONTINUEs `connect` |
//! | `pidfd-getfd PID FD PORT` | steal a socket from another process and connect it |
//! | `bad-args DEAD [LIVE]` | a table of hostile `connect` arguments |
//! | `scan-fds [--make-listener]` | list `/proc/self/fd`, look for a seccomp listener |
//! | `signal-storm PORT N [--no-restart]` | connects under a 1 ms `SIGALRM` timer |
//! | `idle [SECONDS]` | prints its pid and the address of a secret, then sleeps |
//! | `ptrace PID [ADDR]` | `PTRACE_SEIZE` another process (and peek one word at ADDR) |
//! | `vm-read PID ADDR LEN` | `process_vm_readv` of another process's memory |
//! | `socket FAMILY:TYPE[:PROTO]...` | raw `socket()` calls, 64-bit arguments, in numbers |
//! | `touch PATH` | creates a file: proof that the command ran |
//! | `chroot-unix DIR PATH [--chdir SUB]` | `chroot`, then one `AF_UNIX` connect |
//! | `landlock-abi`, `proc-read PID ADDR LEN`, `signal PID SIG`, `signal-child SIG` | Landlock's reach (D5) |
//! | `tty-ioctls`, `if-ioctls`, `setown` | ioctl and fcntl rules (J6, N1, J7) |
//! | `msgname-flip ALLOWED DENIED N` | `sendmsg` while another thread flips `msg_name` (L3, M1) |
//! | `dup2-flip TCP DENIED N` | `sendmsg` to DENIED on a fd `dup2` swaps between TCP and UDP |
//! | `sendmmsg PORT...` | one `sendmmsg`, one UDP entry per port |
//! | `udp-connected ALLOWED DENIED` | connected UDP: send, then sendto/sendmsg elsewhere |
//! | `bind PROTO ADDR PORT [--listen]` | one bind (and listen); reports the local address |
//! | `listen-unbound FAMILY` | `listen` on a socket never bound |
//! | `source PROTO PORT` | connect or send from an unbound socket; reports its source |
//! | `pktinfo PORT SRC` | a datagram with `IP_PKTINFO` choosing source SRC |
//! | `register-self-fds SOCK POLICY FROM TO [PORT TRIES]` | `RegisterSelf` + `ListenerFd N` for each N (F2), then connects |
//! | `register-fd-of SOCK POLICY PID` | registers the seccomp listener process PID holds, again |
//! | `addr ...`, `addr-cases ...`, `addr-prop ...`, `addr-listen-run ...` | addresses as the kernel reads them (see `address.rs`) |
//! | `unix-names DIR SERVER CLIENT DGRAM_A DGRAM_B [--chroot ROOT] [--hold FILE]` | unix names read back: bound, peer, accepted, datagram source |

use serde_json::{json, Value};

use crate::sys::{errno_name, Errno};

mod address;
mod attacks;
mod badargs;
mod confine;
mod datagram;
mod flip;
mod hardening;
mod int80;
mod net;
mod sockets;
mod storm;
mod unixnames;
mod uring;

pub use address::{PORT_P, PORT_Q};
pub use confine::SECRET;

/// Runs the probe with its arguments (without the program name); returns the exit status.
pub fn main(args: &[String]) -> i32 {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = match a.as_slice() {
        ["connect", proto, addr, port, flags @ ..] => net::connect(proto, addr, port, flags),
        ["unix", path] => Ok(net::unix(path.as_bytes(), false)),
        ["unix-abstract", name] => Ok(net::unix(name.as_bytes(), true)),
        ["flip", allowed, denied, n] => flip::run(allowed, denied, n),
        ["flip", allowed, denied, n, "swap"] => flip::run_swapping(allowed, denied, n),
        ["io-uring"] => Ok(uring::run(None)),
        ["io-uring", port] => port_arg(port).map(|p| uring::run(Some(p))),
        ["int80", port] => port_arg(port).map(int80::run),
        ["second-listener", port] => port_arg(port).map(attacks::second_listener),
        ["pidfd-getfd", pid, fd, port] => attacks::pidfd_getfd(pid, fd, port),
        ["bad-args", dead] => port_arg(dead).map(|d| badargs::run(d, None)),
        ["bad-args", dead, live] => {
            port_arg(dead).and_then(|d| port_arg(live).map(|l| badargs::run(d, Some(l))))
        }
        ["scan-fds"] => Ok(attacks::scan_fds(false)),
        ["scan-fds", "--make-listener"] => Ok(attacks::scan_fds(true)),
        ["signal-storm", port, n, flags @ ..] => storm::run(port, n, flags),
        ["idle"] => confine::idle(None),
        ["idle", secs] => confine::idle(Some(secs)),
        ["ptrace", pid] => confine::ptrace(pid, None),
        ["ptrace", pid, addr] => confine::ptrace(pid, Some(addr)),
        ["vm-read", pid, addr, len] => confine::vm_read(pid, addr, len),
        ["socket", specs @ ..] => confine::socket(specs),
        ["touch", path] => Ok(confine::touch(path)),
        ["chroot-unix", dir, path, flags @ ..] => confine::chroot_unix(dir, path, flags),
        ["landlock-abi"] => Ok(hardening::landlock_abi()),
        ["proc-read", pid, addr, len] => hardening::proc_read(pid, addr, len),
        ["signal", pid, sig] => hardening::signal(pid, sig),
        ["signal-child", sig] => hardening::signal_child(sig),
        ["tty-ioctls"] => hardening::tty_ioctls(),
        ["if-ioctls"] => hardening::if_ioctls(),
        ["setown"] => hardening::setown(),
        ["msgname-flip", a, d, n] => datagram::msgname_flip(a, d, n),
        ["dup2-flip", t, d, n] => datagram::dup2_flip(t, d, n),
        ["sendmmsg", ports @ ..] if !ports.is_empty() => datagram::sendmmsg(ports),
        ["udp-connected", a, d] => datagram::udp_connected(a, d),
        ["bind", proto, addr, port, flags @ ..] => datagram::bind(proto, addr, port, flags),
        ["listen-unbound", family] => datagram::listen_unbound(family),
        ["source", proto, port] => datagram::source(proto, port),
        ["pktinfo", port, src] => datagram::pktinfo(port, src),
        ["register-self-fds", sock, policy, from, to, rest @ ..] => match rest {
            [] => sockets::register_self_fds(sock, policy, from, to, None),
            [port, tries] => {
                sockets::register_self_fds(sock, policy, from, to, Some((port, tries)))
            }
            _ => Err(format!("malformed register-self-fds: {args:?}")),
        },
        ["register-fd-of", sock, policy, pid] => sockets::register_fd_of(sock, policy, pid),
        ["addr", k, s, o, a, rest @ ..] => address::one(k, s, o, a, rest.first().copied()),
        ["addr-cases", seed, n, dir, regime, run] => address::cases(seed, n, dir, regime, run),
        ["addr-prop", seed, n, netjail, dir] => address::prop(seed, n, netjail, dir),
        ["addr-listen-run", rest @ ..] => address::listen_run(rest),
        ["unix-names", d, s, c, a, b, flags @ ..] => unixnames::run(d, s, c, a, b, flags),
        _ => Err(format!("unknown or malformed subcommand: {args:?}")),
    };
    match out {
        Ok(v) => {
            println!("{v}");
            0
        }
        Err(msg) => {
            eprintln!("nj-probe: {msg}");
            2
        }
    }
}

/// Parses a port number argument.
fn port_arg(s: &str) -> Result<u16, String> {
    s.parse().map_err(|_| format!("bad port {s:?}"))
}

/// Parses a count argument.
fn count_arg(s: &str) -> Result<u64, String> {
    s.parse().map_err(|_| format!("bad count {s:?}"))
}

/// The JSON form of a call's result.
fn result_json(r: Result<(), Errno>) -> Value {
    match r {
        Ok(()) => json!({"ok": true}),
        Err(e) => json!({"ok": false, "errno": e, "err": errno_name(e)}),
    }
}

/// `"ok"` or the errno name, for tables.
fn result_name(r: Result<(), Errno>) -> String {
    match r {
        Ok(()) => "ok".to_owned(),
        Err(e) => errno_name(e),
    }
}

/// Adds one to a per-errno-name tally.
fn tally(map: &mut serde_json::Map<String, Value>, e: Errno) {
    let slot = map.entry(errno_name(e)).or_insert(json!(0));
    *slot = json!(slot.as_u64().unwrap_or(0) + 1);
}
