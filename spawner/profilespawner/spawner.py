"""DockerSystemProfileSpawner: the thin shell gluing the pure parts to JupyterHub and Docker.

Everything that decides (validation, admission, GPU choice, Docker arguments, the form)
lives in pure modules; this class only gathers the inputs (profiles, the user's unix
account and groups, the running containers) and hands the result to dockerspawner.
"""

import asyncio
import grp
import inspect
import os
import pwd
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import docker
import requests
from docker.utils import kwargs_from_env
from dockerspawner import SystemUserSpawner
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Bool, CaselessStrEnum, Dict, Float, Integer, List, Unicode, default, validate

from . import dockerargs, identity, labels, quota
from .admission import Capacity, free_capacity
from .capacity import detect_host
from .check import LOADED, WARNED, oversize_warnings, profiles_from, profiles_key
from .contract import ConfigRefused, auth_state_ids_problem, merge_host_config, owned_setting_warnings
from .courses import course_id, narrow_to_course  # LTI: the launch's course chooses the image
from .errors import FAILED_DEPENDENCY, SpawnRefused, engine_refused_message, engine_unreachable_message
from .form import options_from_form, render_form
from .gpus import free_gpus
from .profiles import effective_profile
from .request import build_request, plan_spawn
from .running import RunningServer, running_servers
from .sizes import SizeError, format_size, parse_size

# held while a spawn is admitted (capacity and GPUs chosen), so concurrent spawns cannot both
# take the last free guarantee or GPU; not held across `docker create`, which would serialize
# every spawn behind the Docker engine
_ADMISSION_LOCK = None
# container name -> RunningServer for spawns admitted but not yet created in Docker
_ADMITTED = {}
# the hub process's threads for Docker API calls (see docker_api_threads)
_DOCKER_EXECUTOR = None
# tries of get_url() to learn a running server's address from Docker before trusting the database
GET_URL_ATTEMPTS = 5


def cached_profiles(path, inline=None):
    """Profiles for a path (or, when no such file exists, the inline traitlets), loaded once per
    process (raises ProfilesError): (Profiles, warnings of the first load, fresh)."""
    key = profiles_key(path, inline)
    fresh = key not in LOADED
    warnings = ()
    if fresh:
        LOADED[key], warnings = profiles_from(path, inline)
    return LOADED[key], warnings, fresh


# held while an account is made (create_system_users): one uid per name, no two picks of one uid
_ACCOUNT_LOCK = threading.Lock()


def _admission_lock():
    global _ADMISSION_LOCK
    if _ADMISSION_LOCK is None:
        _ADMISSION_LOCK = asyncio.Lock()
    return _ADMISSION_LOCK


class DockerSystemProfileSpawner(SystemUserSpawner):
    """SystemUserSpawner sized by per-user/group profiles, with guarantees and GPUs."""

    profiles_file = Unicode(
        "/etc/jupyterhub/profiles.yaml",
        config=True,
        help="""YAML (or .json) profiles file: resource_profiles, image_profiles, user_profiles.
        Validated once when the spawner is first used; call
        ``profilespawner.load_profiles_or_exit(path)`` in jupyterhub_config.py so the hub
        refuses to start on a bad file. Check a file by hand with
        ``python -m profilespawner.check FILE``.""",
    )
    gpu_devices = List(
        Unicode(),
        config=True,
        help="""Host GPUs users may get, as NVIDIA device indices ("0", "1") or UUIDs
        ("GPU-..."), passed to Docker device_requests. Empty: no GPUs.""",
    )
    gpu_sharing = CaselessStrEnum(
        ["exclusive", "shared"],
        default_value="exclusive",
        config=True,
        help="""exclusive: a GPU held by a running server is never given to another one; a
        spawn that finds too few free GPUs fails with an error. shared: GPUs may be shared,
        the least-loaded ones are chosen.""",
    )
    guarantee_cpu_capacity = Float(
        0.0,
        config=True,
        help="""CPUs the guarantees of all user containers together may add up to (what the
        users' slice may hold). 0: the host's CPU count.""",
    )
    guarantee_mem_capacity = Unicode(
        "",
        config=True,
        help="""Memory the guarantees of all user containers together may add up to, as a
        size (e.g. 20G). Empty: the host's physical memory.""",
    )
    pids_limit = Integer(1024, config=True, help="Maximum number of processes in a user container (0: no limit).")
    cgroup_parent = Unicode(
        "",
        config=True,
        help="""cgroup parent of user containers, e.g. jupyterhub-users.slice (systemd cgroup
        driver) so a slice caps all users together. Empty: Docker's default.""",
    )
    besteffort_cgroup_parent = Unicode(
        None,
        allow_none=True,
        config=True,
        help="""cgroup parent of best-effort servers (no guarantee at all): one low-weight parent
        for the whole class, so however many of them are busy they cannot take CPU guaranteed to
        others. None (default): derived from cgroup_parent, jupyterhub-users.slice ->
        jupyterhub-users-besteffort.slice (the docker role installs it with CPUWeight=1), a
        cgroupfs path /x -> /x/besteffort (its cpu.shares must be set to 2 by whoever makes
        it). Empty: best-effort servers stay in cgroup_parent with the minimum weight each.""",
    )
    home_mode = Integer(0o700, config=True, help="Mode of a home directory the spawner creates (octal, default 0o700).")
    scope_labels = Dict(
        value_trait=Unicode(),
        config=True,
        help="""Extra labels put on every user container of this hub AND required of the
        containers counted for admission control and GPU allocation. Empty (default): every
        user container on the Docker engine counts. Set it when several hubs share one engine
        with separate capacity (e.g. a staging hub next to production, or test hubs).""",
    )
    docker_api_threads = Integer(
        8,
        config=True,
        help="""Threads calling the Docker API for the whole hub. dockerspawner uses one, so
        when many users start at once every create, start and inspect waits in one queue
        behind the others; the Docker engine serves concurrent requests. 1: dockerspawner's
        behaviour. Read once, when the first Docker call is made.""",
    )
    ready_poll_interval = Float(
        0.25,
        config=True,
        help="""Seconds between checks, at the end of start(), whether the new server answers
        HTTP yet. JupyterHub's own check backs off to up to 5 s between tries, so a server
        that comes up just after a try otherwise waits seconds more for its user. Bounded by
        http_timeout and start_timeout; when they run out the hub's own check takes over.
        0: leave it all to the hub.""",
    )
    resource_profiles = Dict(
        config=True,
        help="""The profiles in jupyterhub_config.py instead of profiles_file (as pharma253's
        DockerSystemProfileSpawner had them): name -> {cpu_limit, mem_limit, ...}, the format of
        the file's resource_profiles section, validated by the same validator. Used only when
        profiles_file does not exist; when both are set the file wins, with a warning.""",
    )
    image_profiles = Dict(
        config=True,
        help="""Like resource_profiles, for the file's image_profiles section (name -> {image, ...}).""",
    )
    user_profiles = Dict(
        config=True,
        help="""Like resource_profiles, for the file's user_profiles section ("default", "@group",
        user name -> {allowed_resources, allowed_images, ...}).""",
    )
    # --- accounts at first login (OpenID Connect, LTI: users without a host account) ---
    create_system_users = Bool(
        False,
        config=True,
        help="""Make a host account for a hub user who has none, the first time they reach their
        server (the spawn page right after login): useradd with a uid from account_uid_min to
        account_uid_max (derived from the name, see profilespawner.identity), its own group and
        a home (account_home_format, mode home_mode). Needs a hub that may write /etc/passwd (the jupyterhub role's unit drop-in
        when jupyterhub_create_system_users is on). False (default, PAM and LDAP): a hub user
        without an account gets 403.""",
    )
    account_uid_min = Integer(20000, config=True, help="Smallest uid create_system_users gives (>= 1000).")
    account_uid_max = Integer(29999, config=True, help="Largest uid create_system_users gives.")
    account_home_format = Unicode(
        "/home/{username}", config=True,
        help="Home directory of an account made by create_system_users ({username} is replaced).")
    remove = Bool(
        True,
        config=True,
        help="""Remove containers when they stop (default True here): a changed profile or
        image must never reuse a stale container.""",
    )

    @validate("guarantee_mem_capacity")
    def _valid_mem_capacity(self, proposal):
        if proposal.value:
            try:
                parse_size(proposal.value)
            except SizeError as e:
                raise ValueError(f"guarantee_mem_capacity: {e}") from None
        return proposal.value

    @default("options_form")
    def _default_options_form(self):
        return self._render_options_form

    @default("options_from_form")
    def _default_options_from_form(self):
        return options_from_form

    @default("apply_user_options")
    def _default_apply_user_options(self):
        # JupyterHub >= 5.3 calls this before pre_spawn_hook: refuse bad options as early as
        # possible (start() validates again, for older hubs and for re-used stale options).
        return lambda spawner, user_options: spawner._validated_request()

    @property
    def executor(self):
        """One pool of docker_api_threads for the hub process (dockerspawner's has one thread)."""
        global _DOCKER_EXECUTOR
        if _DOCKER_EXECUTOR is None:
            _DOCKER_EXECUTOR = ThreadPoolExecutor(max(1, self.docker_api_threads),
                                                  thread_name_prefix="docker-api")
        return _DOCKER_EXECUTOR

    def _user_id_default(self):
        # -1 instead of KeyError: get_state() reads user_id, and a hub user without a
        # system account must get a clean error from start(), not crash state saving.
        try:
            return pwd.getpwnam(self.user.name).pw_uid
        except KeyError:
            return -1

    def _group_id_default(self):
        try:
            return pwd.getpwnam(self.user.name).pw_gid
        except KeyError:
            return -1

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # configured values, kept so each spawn starts from them (not from the last spawn)
        self._base_host_config = self.extra_host_config
        self._base_create_kwargs = self.extra_create_kwargs
        self._base_notebook_dir = self.notebook_dir
        self._spawn_request = None
        self._course = None  # LTI: the course of the user's launch (profilespawner.courses)
        inline = {key: value for key, value in (("resource_profiles", self.resource_profiles),
                                                ("image_profiles", self.image_profiles),
                                                ("user_profiles", self.user_profiles)) if value}
        # fresh: not loaded by load_profiles_or_exit in jupyterhub_config.py, so warn here, once
        self.profiles, warnings, fresh = cached_profiles(self.profiles_file, inline)
        # once per hub process: what the operator set that the profiles replace, and the
        # profiles this host cannot honour fully
        sizes = oversize_warnings(self.profiles, detect_host()) if fresh else ()
        for warning in (*warnings, *owned_setting_warnings(self.config), *sizes):
            if warning not in WARNED:
                WARNED.add(warning)
                self.log.warning("profilespawner: %s", warning)

    def _docker(self, method, *args, **kwargs):
        """dockerspawner's Docker call (in the executor), except that an engine that does not answer
        is a 424 naming it, never a 500; the engine's own answers (docker.errors.APIError) pass."""
        try:
            return super()._docker(method, *args, **kwargs)
        except docker.errors.APIError:
            raise
        except (docker.errors.DockerException, requests.exceptions.ConnectionError,
                requests.exceptions.Timeout) as e:
            address = {**kwargs_from_env(), **self.client_kwargs}.get("base_url") or "unix:///var/run/docker.sock"
            self.log.error("Docker engine %s unreachable (%s %s for %s): %s", address, method, args[:1],
                           self.user.name, e)
            raise web.HTTPError(FAILED_DEPENDENCY, engine_unreachable_message(address, e)) from None

    # ---------------------------------------------------------------- inputs

    def _account(self):
        try:
            return pwd.getpwnam(self.user.name)
        except KeyError:
            if self.create_system_users:
                return self._create_account()
            raise web.HTTPError(
                403,
                f"Hub user {self.user.name!r} has no system account on this host, so no server can run "
                f"as them; an administrator must create the account (e.g. useradd {self.user.name}).",
            ) from None

    # --- accounts at first login and hub groups (profilespawner.identity decides) ---
    def _create_account(self):
        """Make the missing host account (create_system_users); 400/409/424 naming the problem."""
        name = self.user.name
        with _ACCOUNT_LOCK:  # two first logins at once must not pick the same uid
            try:
                return pwd.getpwnam(name)
            except KeyError:
                pass
            taken = {p.pw_uid for p in pwd.getpwall()} | {g.gr_gid for g in grp.getgrall()}
            home = self.account_home_format.format(username=name)
            try:
                identity.check_account_name(name)  # the name first: a bad one is the login's (400)
            except identity.AccountError as e:
                raise web.HTTPError(400, str(e)) from None
            try:
                uid = identity.pick_uid(name, self.account_uid_min, self.account_uid_max, taken)
            except identity.AccountError as e:  # the uid range is full: the site must widen it
                raise web.HTTPError(409, str(e)) from None
            argv = identity.useradd_argv(name, uid, home)
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
            if done.returncode != 0:
                raise web.HTTPError(FAILED_DEPENDENCY, f"Cannot create the host account of {name!r} (uid {uid}): "
                                         f"{done.stderr.strip()} (create_system_users needs a hub that may "
                                         "write /etc: the jupyterhub role's unit drop-in)")
            account = pwd.getpwnam(name)
            if os.path.isdir(account.pw_dir):  # home_mode whatever login.defs says
                os.chmod(account.pw_dir, self.home_mode)
            self.log.info("Created host account %s (uid %d) for hub user %s", name, uid, name)
            return account

    def _hub_groups(self):
        try:
            return [g.name for g in self.user.groups]
        except AttributeError:  # a spawner made by hand, without a hub user
            return []

    def _unix_groups(self, account):
        names = []
        for gid in os.getgrouplist(account.pw_name, account.pw_gid):
            try:
                names.append(grp.getgrgid(gid).gr_name)
            except KeyError:
                pass
        return names

    def _effective_profile(self, account=None):
        if account is None:
            try:
                account = pwd.getpwnam(self.user.name)
            except KeyError:
                account = None
        groups = self._unix_groups(account) if account else []
        groups = identity.profile_groups(groups, self._hub_groups())  # hub groups count too
        return narrow_to_course(self.profiles, effective_profile(self.profiles, self.user.name, groups),
                                self._course)

    # ---- LTI: the course of the launch (auth_state) narrows the images; see profilespawner.courses
    async def run_auth_state_hook(self, auth_state):
        """The hub runs this before the spawn page's form and before every spawn (before
        apply_user_options and start()): record the course of the user's latest launch, then run
        any configured auth_state_hook."""
        self._course = course_id(auth_state)
        await super().run_auth_state_hook(auth_state)

    def _guarantee_capacity(self, host):
        cpus = self.guarantee_cpu_capacity or host.cpus
        mem = parse_size(self.guarantee_mem_capacity) if self.guarantee_mem_capacity else host.mem_bytes
        return Capacity(cpus, mem)

    async def _running_servers(self):
        """Docker's live user containers plus the spawns admitted but not created yet."""
        wanted = [labels.USER] + [f"{k}={v}" for k, v in self.scope_labels.items()]
        containers = await self.docker("containers", all=True, filters={"label": wanted})
        live = running_servers([c for c in containers if c.get("State") not in ("exited", "dead")])
        in_docker = {server.container for server in live}
        return live + tuple(server for name, server in _ADMITTED.items() if name not in in_docker)

    # ---------------------------------------------------------------- form

    async def _render_options_form(self, spawner=None):
        user = self._effective_profile()
        host = detect_host()
        running = await self._running_servers()
        cpu_free, mem_free = free_capacity(running, self._guarantee_capacity(host))
        gpu_free = len(free_gpus(self.gpu_devices, running)) if self.gpu_devices else None
        return render_form(self.profiles, user, host, cpu_free, mem_free, gpu_free, course=self._course)

    # ---------------------------------------------------------------- spawn

    def _ensure_home(self, account, path):
        """Create a missing home owned by the user (mode home_mode); leave existing ones alone."""
        if os.path.isdir(path):
            return
        parent = os.path.dirname(path.rstrip("/"))
        try:
            os.makedirs(parent, mode=0o755, exist_ok=True)
            try:
                os.mkdir(path, self.home_mode)
            except FileExistsError:
                return
            os.chown(path, account.pw_uid, account.pw_gid)
            os.chmod(path, self.home_mode)
        except OSError as e:
            raise web.HTTPError(FAILED_DEPENDENCY, f"Cannot create the home directory {path} of {self.user.name!r}: {e} "
                                     "(the hub must run as root to create homes)") from None
        self.log.info("Created home %s for %s (mode %o)", path, self.user.name, self.home_mode)

    async def _apply_disk_quota(self, account, profile, home):
        """The resource profile's disk_quota as the user's limit on the home's filesystem, set at
        every start (so a changed profile takes effect). Without disk_quota the user's limit is
        left as it is. A filesystem without user quotas refuses the spawn (HTTP 424 naming the
        profile, the home and what to do): never a silently unlimited home."""
        if profile.disk_quota is None:
            return
        try:
            filesystem = await asyncio.to_thread(quota.apply_quota, account.pw_uid, profile.disk_quota, home)
        except quota.QuotaError as e:
            raise web.HTTPError(
                FAILED_DEPENDENCY,
                f"Resource profile {profile.name!r} sets disk_quota {format_size(profile.disk_quota)}, which "
                f"cannot be applied to the home {home} of {account.pw_name!r}: {e.message}. An administrator "
                f"must {quota.HOW_TO_ENABLE.format(path=e.filesystem)}.",
            ) from None
        self.log.info("Home quota of %s: %sB on %s (resource profile %s)", account.pw_name,
                      format_size(profile.disk_quota), filesystem, profile.name)

    def _validated_request(self):
        """(account, effective profile, SpawnRequest) or HTTPError: 403 no account, 400 bad option."""
        account = self._account()
        user = self._effective_profile(account)
        try:
            return account, user, build_request(self.profiles, user, self.user_options, detect_host())
        except SpawnRefused as e:
            raise web.HTTPError(e.status, e.message) from None

    async def start(self):
        """Validate user_options (form or REST API, or re-used from the last spawn) before
        anything is created; bad options -> HTTP 400 naming the field. Once the container
        runs, wait (every ready_poll_interval) until its server answers."""
        started = time.monotonic()
        account, user, req = self._validated_request()
        problem = auth_state_ids_problem(await self.user.get_auth_state(), account.pw_uid, account.pw_gid)
        if problem:
            raise web.HTTPError(403, f"Refusing to spawn {self.user.name!r}: {problem}")
        self.user_id, self.group_id = account.pw_uid, account.pw_gid
        for warning in req.warnings:
            self.log.warning("Spawning %s: %s", self.user.name, warning)
        home = user.host_homedir_format_string
        self.host_homedir_format_string = home
        self.image_homedir_format_string = home  # same path inside: absolute paths keep working
        self._ensure_home(account, self.host_homedir)
        await self._apply_disk_quota(account, self.profiles.resources[req.resource_profile], self.host_homedir)
        self._apply_request(req)
        if not self._base_notebook_dir:
            self.notebook_dir = self.homedir
        try:
            ip, port = await super().start()
            budget = min(self.http_timeout, self.start_timeout - (time.monotonic() - started) - 1)
            server = getattr(self, "server", None)  # None outside a hub (e.g. a spawner made by hand)
            if server is not None and self.ready_poll_interval > 0 and budget > 0 and not self.internal_ssl:
                await self._wait_until_answering(f"http://{ip}:{port}{server.base_url}", budget)
        except docker.errors.APIError as e:  # the engine refused (e.g. no GPU runtime): a 424, never a 500
            self.log.error("Docker refused the server of %s: %s", self.user.name, e)
            await self._remove_failed_container()
            raise web.HTTPError(FAILED_DEPENDENCY,
                                engine_refused_message(e.explanation or str(e), self._spawn_request.gpu_ids)) from None
        except BaseException:  # also a cancelled start: never leave a running container behind
            await self._remove_failed_container()
            raise
        return ip, port

    def _apply_request(self, req):
        """The spawner's own attributes say what the container gets (dockerspawner's contract:
        image, mem_limit, cpu_limit and the guarantees are the spawn's, not the config's)."""
        self._spawn_request = req
        self.image = req.image
        self.mem_limit = int(req.mem_limit)
        self.cpu_limit = float(req.cpu_limit)
        self.mem_guarantee = int(req.mem_guarantee)
        self.cpu_guarantee = float(req.cpu_guarantee)

    async def _remove_failed_container(self):
        """A container created by a start that then failed (e.g. Docker refused to start it, or
        the readiness check raised) is stopped and, with remove (default), removed, so nothing a
        failed spawn made is left running; without AutoRemove (dockerargs) the engine no longer
        does it. Never raises: the start's own error is what the user sees."""
        if not self.object_id:
            return
        try:
            obj = await self.get_object()  # e.g. a refused spawn: the old container is gone already
            if obj is None:
                self.object_id = ""
                return
            if obj.get("State", {}).get("Running", True):
                await self.stop_object()
        except Exception as e:  # noqa: BLE001  (removing it is still right)
            self.log.warning("Could not stop %s after its failed start: %r", self.object_name, e)
        if not self.remove:
            return
        try:
            await self.remove_object()
        except Exception as e:  # noqa: BLE001
            self.log.warning("Could not remove %s after its failed start: %r", self.object_name, e)
            return
        self.object_id = ""

    async def _wait_until_answering(self, url, budget):
        """Poll url every ready_poll_interval until it answers (any status below 500, as the
        hub's own check counts it) or budget seconds pass; never raises. Uses a client of its
        own: the hub's shared one has 10 slots, which the hub needs for the proxy's API."""
        client = AsyncHTTPClient(force_instance=True)
        deadline = time.monotonic() + budget
        try:
            while time.monotonic() < deadline:
                try:
                    await client.fetch(url, follow_redirects=False, request_timeout=5)
                    return True
                except HTTPClientError as e:
                    if e.code < 500:
                        return True
                except OSError:
                    pass
                await asyncio.sleep(self.ready_poll_interval)
        finally:
            client.close()
        self.log.info("%s did not answer within %.0fs of start; the hub keeps checking", url, budget)
        return False

    async def create_object(self):
        """Admission control and GPU choice, from the running containers and the spawns
        admitted but not created yet, then create. The admitted spawn is reserved until its
        container exists (and so counts in Docker's own list)."""
        account = self._account()
        user = self._effective_profile(account)
        host = detect_host()
        async with _admission_lock():
            running = await self._running_servers()
            try:
                req = plan_spawn(self.profiles, user, self.user_options, host, running,
                                 self._guarantee_capacity(host), self.gpu_devices, self.gpu_sharing,
                                 replacing_container=self.object_name)
            except SpawnRefused as e:
                raise web.HTTPError(e.status, e.message) from None
            _ADMITTED[self.object_name] = RunningServer(
                self.object_name, self.user.name, req.cpu_guarantee, req.mem_guarantee, req.gpu_ids)
        try:
            self._apply_request(req)
            ours = dockerargs.host_config(req, self.pids_limit, self.cgroup_parent, self.besteffort_cgroup_parent,
                                          self._guarantee_capacity(host).mem_bytes)
            if "mounts" in ours:  # data mounts next to dockerspawner's own (mounts), not instead
                ours["mounts"] = list(self.mount_binds) + ours["mounts"]
            base = self._eval_if_callable(self._base_host_config)
            if inspect.isawaitable(base):
                base = await base
            try:
                self.extra_host_config, warnings = merge_host_config(base, ours, req.cap_add)
            except ConfigRefused as e:
                raise web.HTTPError(409, f"Refusing to spawn {self.user.name!r}: {e}") from None
            for warning in warnings:
                self.log.warning("Spawning %s: %s", self.user.name, warning)
            self.extra_create_kwargs = _merged(self._base_create_kwargs, {
                "labels": {**self.scope_labels, **dockerargs.container_labels(req, self.user.name)},
                "working_dir": self.homedir,
            })
            self.log.info("Spawning %s: %s", self.user.name, req)
            return await super().create_object()
        finally:
            _ADMITTED.pop(self.object_name, None)

    def get_env(self):
        env = super().get_env()
        if self._spawn_request is not None:
            env.update(dockerargs.environment(self._spawn_request))
        return env

    async def get_url(self):
        """Where the server listens, asked of Docker. JupyterHub asks this (after poll() says the
        container runs) of servers it finds at start-up; a server whose spawn a hub restart
        interrupted has no address in the database yet (it is written when start() returns), so
        trusting the database made the hub wait http_timeout for nothing and then stop a healthy
        container. Adopting it here lets the hub find it up at once."""
        if not self.object_id:
            return await super().get_url()
        for attempt in range(1, GET_URL_ATTEMPTS + 1):  # a busy engine may fail a call: a few tries, bounded
            try:
                ip, port = await self.get_ip_and_port()
                break
            except Exception as e:  # noqa: BLE001  (the hub then checks the address it has)
                self.log.warning("Cannot ask Docker where %s listens (try %d of %d): %r",
                                 self.object_name, attempt, GET_URL_ATTEMPTS, e)
                if attempt == GET_URL_ATTEMPTS:
                    return await super().get_url()
                await asyncio.sleep(1)
        host = f"[{ip}]" if ":" in ip else ip
        url = f"{self.server.proto}://{host}:{port}{self.server.base_url}"
        self.log.info("%s runs container %s at %s", self._log_name, self.object_name, url)
        return url

    async def stop(self, now=False):
        """Nothing to stop when no container was ever created (e.g. a refused spawn):
        avoids docker calls with an empty id while the hub cleans up a failed start."""
        if not self.object_id:
            obj = await self.get_object()  # a container may still exist under our name
            if obj is None:
                self.clear_state()
                return
        await super().stop(now=now)


def _merged(base, ours):
    """Configured extra_* (dict or callable) with our values on top (ours win)."""
    if callable(base):
        async def evaluate(spawner):
            value = base(spawner)
            if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
                value = await value
            return _merged(value or {}, ours)

        return evaluate
    merged = dict(base or {})
    for key, value in ours.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged
