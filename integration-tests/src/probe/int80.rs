//! `int80 PORT`: the i386 system call table reached from a 64-bit process with `int $0x80`.
//!
//! A filter that looks only at the x86_64 syscall numbers is blind here: 102 is `socketcall`
//! in the i386 table (and `getuid` in the x86_64 one). The sandbox must kill any call whose
//! `arch` is not the native one, so confined this probe dies of `SIGSYS` before it prints.
#![allow(unsafe_code)]

use serde_json::{json, Value};

use crate::sys::errno_name;

const SYS_SOCKETCALL_I386: u32 = 102;
const SYS_SOCKET: u32 = 1;
const SYS_CONNECT: u32 = 3;

/// One i386 `socketcall(call, args)`; returns the raw result (negative errno on error).
fn socketcall(call: u32, args: *mut u32) -> i32 {
    let mut eax = SYS_SOCKETCALL_I386;
    // SAFETY: `int $0x80` enters the kernel's compat entry; ebx (loaded through a scratch
    // register because LLVM reserves rbx) is the socketcall number and ecx points to the u32
    // argument array, which the caller placed below 4 GiB. The kernel only reads that array
    // and the memory it points to. r8-r11 may be clobbered by the compat entry path.
    unsafe {
        std::arch::asm!(
            "xchg {call:r}, rbx",
            "int 0x80",
            "xchg {call:r}, rbx",
            call = inout(reg) u64::from(call) => _,
            inout("eax") eax,
            in("ecx") args as usize as u32,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
        );
    }
    eax as i32
}

/// Creates an `AF_INET` stream socket and connects it to 127.0.0.1:PORT, all through `int 0x80`.
pub(crate) fn run(port: u16) -> Value {
    // SAFETY: a fresh private anonymous mapping; MAP_32BIT puts it below 4 GiB.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
            -1,
            0,
        )
    };
    if page == libc::MAP_FAILED || page as usize > u32::MAX as usize - 4096 {
        return json!({"error": "no memory below 4 GiB"});
    }
    let args = page.cast::<u32>();
    // SAFETY: the page is ours, 4096 bytes, writable and page-aligned; we write 3 u32 words at
    // the start and a 16-byte sockaddr_in at byte 64.
    let fd = unsafe {
        args.write(libc::AF_INET as u32);
        args.add(1).write(libc::SOCK_STREAM as u32);
        args.add(2).write(0);
        socketcall(SYS_SOCKET, args)
    };
    let mut out = json!({"socket_fd": fd});
    if fd < 0 {
        out["socket_err"] = json!(errno_name(-fd));
        return out;
    }
    // SAFETY: as above; the sockaddr lives at byte 64 of the same page.
    let res = unsafe {
        let sa = page.cast::<u8>().add(64);
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
            },
            sin_zero: [0; 8],
        };
        sa.cast::<libc::sockaddr_in>().write(sin);
        args.write(fd as u32);
        args.add(1).write(sa as usize as u32);
        args.add(2).write(16);
        socketcall(SYS_CONNECT, args)
    };
    out["connect_res"] = json!(res);
    if res < 0 {
        out["connect_err"] = json!(errno_name(-res));
    }
    out
}
