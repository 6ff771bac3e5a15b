#!/usr/bin/python3
"""Runs a program under the system call filter of a systemd unit file, e.g.
examples/systemd/sersync.service's

    SystemCallFilter=@system-service
    SystemCallFilter=~@privileged @resources
    SystemCallErrorNumber=EPERM

read from the file as systemd reads it: the assignments in order, the first one an allow list
(no `~`), each later one adding its calls (no `~`) or taking them away (`~`); a call outside
the result fails with EPERM, in the program and everything it runs. The groups are read from
this machine's `systemd-analyze syscall-filter`, so they are the ones its systemd would apply.
Needs Debian's python3-seccomp (libseccomp's bindings) and no_new_privs (setpriv
--no-new-privs) or CAP_SYS_ADMIN.

usage: unit-syscall-filter.py UNIT-FILE PROGRAM [ARG...]
"""
import errno
import os
import subprocess
import sys

import seccomp


def members(group, seen):
    """The system calls of `group`, nested groups expanded."""
    out = subprocess.run(
        ["systemd-analyze", "syscall-filter", group],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    names = set()
    for line in out.splitlines()[1:]:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            if line not in seen:
                seen.add(line)
                names |= members(line, seen)
        else:
            names.add(line)
    return names


def names(items):
    """The system calls `items` (groups and plain names) stand for."""
    out = set()
    for item in items:
        out |= members(item, set()) if item.startswith("@") else {item}
    return out


def unit_filter(path):
    """The calls the unit's SystemCallFilter= lines allow, and how many they take away."""
    allowed, denied = None, set()
    with open(path) as unit:
        for line in unit:
            key, _, value = line.strip().partition("=")
            if key != "SystemCallFilter":
                continue
            deny = value.startswith("~")
            items = names(value.lstrip("~").split())
            if allowed is None:
                if deny:
                    sys.exit(f"{path}: a deny list first is not what this script applies")
                allowed = items
            elif deny:
                allowed -= items
                denied |= items
            else:
                allowed |= items
                denied -= items
    if allowed is None:
        sys.exit(f"{path}: no SystemCallFilter= line")
    return allowed, denied


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: unit-syscall-filter.py UNIT-FILE PROGRAM [ARG...]")
    allowed, denied = unit_filter(sys.argv[1])
    filt = seccomp.SyscallFilter(defaction=seccomp.ERRNO(errno.EPERM))
    count = 0
    for name in sorted(allowed):
        try:
            filt.add_rule(seccomp.ALLOW, name)
            count += 1
        except (RuntimeError, ValueError, OSError):
            pass  # not a system call of this architecture
    filt.load()
    print(
        f"unit-syscall-filter: {count} system calls allowed, {len(denied)} denied by name",
        file=sys.stderr,
        flush=True,
    )
    os.execvp(sys.argv[2], sys.argv[2:])


if __name__ == "__main__":
    main()
