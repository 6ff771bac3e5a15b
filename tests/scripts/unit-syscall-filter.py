#!/usr/bin/python3
"""Runs a program under the system call filter of examples/systemd/sersync.service:

    SystemCallFilter=@system-service
    SystemCallFilter=~@privileged @resources
    SystemCallErrorNumber=EPERM

that is: the calls of @system-service but those of @privileged and @resources are allowed, any
other fails with EPERM, in the program and everything it runs. The groups are read from this
machine's `systemd-analyze syscall-filter`, so they are the ones its systemd would apply.
Needs Debian's python3-seccomp (libseccomp's bindings) and no_new_privs (setpriv
--no-new-privs) or CAP_SYS_ADMIN.

usage: unit-syscall-filter.py PROGRAM [ARG...]
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


def main():
    allowed = members("@system-service", set())
    denied = members("@privileged", set()) | members("@resources", set())
    allowed -= denied
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
    os.execvp(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
