"""Real system users with host homes, as the hub's PAM and the spawner see them."""
import grp
import pwd
import shutil
import subprocess


def ensure_group(name: str) -> grp.struct_group:
    try:
        return grp.getgrnam(name)
    except KeyError:
        subprocess.run(["groupadd", name], check=True)
        return grp.getgrnam(name)


def ensure_user(name: str, password: str | None = None, groups: tuple[str, ...] = (),
                home: str | None = None, create_home: bool = True) -> pwd.struct_passwd:
    """Create (or update) a login user; the password, when given, works through PAM."""
    for group in groups:
        ensure_group(group)
    try:
        pwd.getpwnam(name)
    except KeyError:
        if create_home:  # a new account starts with a new home, not one an interrupted run left behind
            shutil.rmtree(home or f"/home/{name}", ignore_errors=True)
        cmd = ["useradd", "--shell", "/bin/bash", "--create-home" if create_home else "--no-create-home"]
        if home:
            cmd += ["--home-dir", home]
        subprocess.run(cmd + [name], check=True)
    if groups:
        subprocess.run(["usermod", "-a", "-G", ",".join(groups), name], check=True)
    if password is not None:
        subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True)
    return pwd.getpwnam(name)


def remove_user(name: str) -> None:
    subprocess.run(["userdel", "--remove", name], capture_output=True)
