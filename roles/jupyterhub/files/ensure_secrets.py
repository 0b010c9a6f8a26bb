"""Add missing secrets to an env file; never change one that exists.

Usage: ensure_secrets.py FILE NAME [NAME ...]. Prints "added NAME" per new secret (Ansible's
changed_when reads it). WHY a script: regenerating a crypt key or proxy token on a re-run would
lock users out of encrypted auth state and orphan the proxy, so "create once" must hold per key.
"""
import os
import secrets
import sys


def main(path, names):
    present = set()
    if os.path.exists(path):
        with open(path) as f:
            present = {line.split("=", 1)[0].strip() for line in f if "=" in line}
    missing = [name for name in names if name not in present]
    if missing:
        old_umask = os.umask(0o077)
        try:
            with open(path, "a") as f:
                for name in missing:
                    f.write(f"{name}={secrets.token_hex(32)}\n")
        finally:
            os.umask(old_umask)
    for name in missing:
        print(f"added {name}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
