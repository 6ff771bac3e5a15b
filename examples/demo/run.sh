#!/usr/bin/env bash
# The sersync demo: a real rsync daemon on a loopback port plays the slave, sersync watches a
# demo directory, a few changes are made (including names a shell would choke on), and the
# slave's tree is shown converging. Everything lives in a temporary directory and is removed
# at the end. Usage: bash examples/demo/run.sh [--keep]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
keep=${1:-}

if ! command -v rsync >/dev/null 2>&1; then
    echo "rsync is not installed. Install it first, e.g.: sudo apt-get install -y rsync" >&2
    exit 1
fi

echo "==> building sersync"
cargo build --quiet --release -p sersync --manifest-path "$repo/Cargo.toml"
sersync="$repo/target/release/sersync"
[ -n "${CARGO_TARGET_DIR:-}" ] && sersync="$CARGO_TARGET_DIR/release/sersync"

work=$(mktemp -d /tmp/sersync-demo.XXXXXX)
cleanup() {
    [ -n "${sersync_pid:-}" ] && kill "$sersync_pid" 2>/dev/null && wait "$sersync_pid" 2>/dev/null || true
    [ -n "${rsyncd_pid:-}" ] && kill "$rsyncd_pid" 2>/dev/null || true
    if [ "$keep" = "--keep" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
mkdir -p "$work/master" "$work/slave"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo "$1"; }
port=$(free_port 18873)
control_port=$(free_port 18874)
chroot=no; [ "$(id -u)" = 0 ] && chroot=yes
cat > "$work/rsyncd.conf" <<CONF
use chroot = $chroot
munge symlinks = no
max connections = 0
log file = $work/rsyncd.log
[demo]
path = $work/slave
read only = no
auth users = demo
secrets file = $work/rsyncd.secrets
CONF
[ "$(id -u)" = 0 ] && printf 'uid = 0\ngid = 0\n' >> "$work/rsyncd.conf"
echo "demo:demo-password" > "$work/rsyncd.secrets"
echo "demo-password" > "$work/client.pass"
chmod 600 "$work/rsyncd.secrets" "$work/client.pass"

echo "==> starting the slave: rsync --daemon on 127.0.0.1:$port (module 'demo')"
rsync --daemon --no-detach --config="$work/rsyncd.conf" --port="$port" --address=127.0.0.1 &
rsyncd_pid=$!

cat > "$work/confxml.xml" <<XML
<?xml version="1.0" encoding="ISO-8859-1"?>
<head version="2.5">
    <host hostip="127.0.0.1" port="$control_port"/>
    <filter start="true"><exclude expression="(.*)\.tmp"/></filter>
    <sersync>
        <localpath watch="$work/master">
            <remote ip="127.0.0.1" name="demo"/>
        </localpath>
        <rsync>
            <commonParams params="-artuz"/>
            <auth start="true" users="demo" passwordfile="$work/client.pass"/>
            <userDefinedPort start="true" port="$port"/>
            <timeout start="true" time="30"/>
        </rsync>
    </sersync>
</head>
XML

echo "==> the configuration, as sersync understands it (sersync --check)"
"$sersync" -o "$work/confxml.xml" --check
echo
echo "==> starting sersync (foreground process, logging to $work/sersync.log)"
"$sersync" -o "$work/confxml.xml" >"$work/sersync.log" 2>&1 &
sersync_pid=$!
for _ in $(seq 100); do grep -q "running lanes=" "$work/sersync.log" && break; sleep 0.1; done

echo "==> making changes in the master tree"
cd "$work/master"
mkdir -p site/css site/img
echo "<h1>hello</h1>" > site/index.html
echo "body { color: teal }" > site/css/main.css
echo "not synced: excluded by <filter>" > site/draft.tmp
echo "a name a shell would run: \$(touch PWNED)" > 'site/$(touch PWNED).txt'
printf 'line\nbreak' > "site/$(printf 'new\nline')"
ln -s index.html site/home.html
mv site/img site/images

converged=no
for _ in $(seq 100); do
    if diff -r --exclude='*.tmp' "$work/master" "$work/slave" >/dev/null 2>&1; then converged=yes; break; fi
    sleep 0.1
done
echo
echo "==> the slave now holds:"
(cd "$work/slave" && find . -mindepth 1 | sort | sed 's/^/    /')
echo
if [ "$converged" = yes ]; then
    echo "==> master and slave are identical (apart from the excluded *.tmp); no PWNED file anywhere: $(ls "$work"/master/PWNED "$work"/slave/PWNED 2>/dev/null | wc -l) found"
else
    echo "==> the slave did not converge; sersync's log:" >&2
    cat "$work/sersync.log" >&2
    exit 1
fi
echo "==> sersync's log:"
sed 's/^/    /' "$work/sersync.log"
