#!/bin/sh
# The main job of netjail, with no set-up: a confined program makes one connection the policy
# allows and one it denies. Two listeners run on loopback so that the denial is the policy's
# doing, not an empty port. Usage: demo/demo.sh PATH-TO-netjail
set -eu
netjail=${1:-target/debug/netjail}
dir=$(mktemp -d /tmp/netjail-demo.XXXXXX)
listener_pid=""
cleanup() {
    [ -n "$listener_pid" ] && kill "$listener_pid" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

# Two TCP listeners on 127.0.0.1, ports chosen by the kernel, written to a file.
python3 - "$dir/ports" <<'PY' &
import socket, sys, threading
socks = []
for _ in range(2):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    socks.append(s)
open(sys.argv[1] + ".tmp", "w").write(" ".join(str(s.getsockname()[1]) for s in socks) + "\n")
import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])
def serve(s):
    while True:
        c, _ = s.accept()
        c.sendall(b"hello from the listener\n")
        c.close()
for s in socks:
    threading.Thread(target=serve, args=(s,), daemon=True).start()
threading.Event().wait(60)
PY
listener_pid=$!
i=0
while [ ! -s "$dir/ports" ]; do
    i=$((i + 1)); [ $i -gt 100 ] && { echo "demo: listener did not start" >&2; exit 1; }
    sleep 0.05
done
read -r allowed denied < "$dir/ports"

cat > "$dir/demo.toml" <<TOML
name = "demo"
default = "deny"

[[allow]]
connect = ["tcp://127.0.0.1:$allowed"]
TOML

echo "== policy ($dir/demo.toml)"
cat "$dir/demo.toml"
echo
# netjail refuses to confine a program that runs as root unless told so (docs/security.md,
# "Root sandboxes"): run as root (as CI does), the demo says it.
allow_root=
if [ "$(id -u)" = 0 ]; then
    allow_root=--allow-root
fi
echo "== netjail run $allow_root --policy demo.toml -- python3 client.py   (embedded broker, audit on stderr)"
"$netjail" run $allow_root --policy "$dir/demo.toml" -- python3 - "$allowed" "$denied" <<'PY'
import socket, sys
for port in map(int, sys.argv[1:]):
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", port))
        print(f"connect 127.0.0.1:{port} -> allowed: {s.recv(100).decode().strip()!r}")
    except OSError as e:
        print(f"connect 127.0.0.1:{port} -> refused: {e.strerror} (errno {e.errno})")
    finally:
        s.close()
PY
