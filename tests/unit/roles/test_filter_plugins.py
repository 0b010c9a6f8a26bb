"""The roles' filter plugins behind the early checks: pure functions, no host needed."""
import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def load_filter(role: str, module: str):
    """A role's filter plugin module, loaded from its file (roles are not a package)."""
    path = REPO / "roles" / role / "filter_plugins" / f"{module}.py"
    spec = importlib.util.spec_from_file_location(f"jbm_{role}_{module}", path)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def test_cidr_problems_name_each_bad_entry_and_its_index():
    networks = load_filter("firewall", "networks")
    assert networks.cidr_problems(["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]) == []
    problems = networks.cidr_problems(["10.0.0.0/8", "office", "10.0.0.1/8"])
    assert [p.split(":")[0] for p in problems] == ["admin_networks[1]", "admin_networks[2]"]
    assert "'office' is not a CIDR network" in problems[0]
    assert networks.cidr_problems([]) == [
        "admin_networks is empty: list at least one CIDR network (e.g. 192.0.2.0/24)"]
    assert "must be a list" in networks.cidr_problems("10.0.0.0/8")[0]
    assert networks.ip_in_networks("172.17.0.1", ["10.0.0.0/8", "172.17.0.0/16"])
    assert not networks.ip_in_networks("172.18.0.1", ["172.17.0.0/16", "garbage"])
    assert not networks.ip_in_networks("not-an-ip", ["0.0.0.0/0"])


UFW_HEADER = (
    "Status: active\n\n"
    "To                         Action      From\n"
    "--                         ------      ----\n"
)


def test_users_network_problems_name_each_variable_and_value():
    check = load_filter("docker", "users_network").users_network_problems
    assert check("10.250.0.0/16", "10.250.0.1", "jbm-users0", ["169.254.169.254/32"]) == []
    problems = check("10.250.0.1/16", "10.251.0.1", "a-bridge-name-too-long", ["169.254.169.254/16"])
    assert len(problems) == 3, problems
    assert problems[0].startswith("docker_users_network_subnet='10.250.0.1/16' is not an IPv4")
    assert problems[1].startswith("docker_users_network_bridge='a-bridge-name-too-long'")
    assert problems[2].startswith("docker_users_blocked_destinations[0]: '169.254.169.254/16'")
    assert check("10.250.0.0/16", "10.251.0.1", "jbm-users0", []) == [
        "docker_users_network_gateway='10.251.0.1' is not a host address of "
        "docker_users_network_subnet='10.250.0.0/16'"]
    assert check("10.250.0.0/16", "10.250.0.1", "jbm-users0", ["x"])[0].startswith(
        "docker_users_blocked_destinations[0]: 'x' is not an IPv4 CIDR network")
    assert check("10.250.0.0/30", "10.250.0.1", "jbm-users0", [])[0].startswith(
        "docker_users_network_subnet='10.250.0.0/30' is too small")


def test_users_ingress_problems_name_each_variable_and_value():
    check = load_filter("docker", "users_network").users_ingress_problems
    assert check("10.250.0.1", 8081, [], False) == []  # a single server: nothing from beyond
    assert check("192.0.2.10", "8081", ["192.0.2.10/32"], True) == []
    assert check("192.0.2.10", 8081, [], True) == [
        "docker_users_ingress_sources=[] on a swarm node: the hub could reach no server on it; list "
        "the hub's address (its default, e.g. ['192.0.2.10/32'])"]
    problems = check("", 0, ["192.0.2.10"], True)
    assert problems[0].startswith("docker_users_hub_address='' is not an IPv4 address")
    assert problems[1] == "docker_users_hub_port=0 is not a TCP port (1-65535)"
    assert len(problems) == 2  # a host address is a /32 network
    assert check("192.0.2.10", 8081, ["192.0.2.0/16"], True)[0].startswith(
        "docker_users_ingress_sources[0]: '192.0.2.0/16' is not an IPv4 CIDR network")
    assert check("192.0.2.10", 8081, "192.0.2.10/32", True)[0].startswith(
        "docker_users_ingress_sources must be a list of IPv4 CIDR networks")


def test_stale_sources_are_the_tagged_rules_no_longer_wanted():
    networks = load_filter("firewall", "networks")
    status = UFW_HEADER + (
        "22/tcp                     ALLOW       172.17.0.0/16              # jbm ssh\n"
        "22/tcp                     ALLOW       192.0.2.7                  # jbm ssh\n"
        "22/tcp                     ALLOW       198.51.100.0/24            # jbm ssh\n"
        "22/tcp                     ALLOW       203.0.113.0/24             # someone else\n"
        "22/tcp (v6)                ALLOW       2001:db8::/32              # jbm ssh\n")
    assert networks.stale_sources(status, "jbm ssh", ["172.17.0.0/16", "192.0.2.7/32"]) == [
        "198.51.100.0/24", "2001:db8::/32"]
    assert networks.stale_sources(status, "jbm ssh",
                                  ["172.17.0.0/16", "192.0.2.7", "198.51.100.0/24",
                                   "2001:db8::/32"]) == []


def test_stale_port_rules_are_the_public_rules_of_another_mode_port_or_source():
    networks = load_filter("firewall", "networks")
    status = UFW_HEADER + (
        "22/tcp                     ALLOW       172.17.0.0/16              # jbm ssh\n"
        "8000/tcp                   ALLOW       Anywhere                   # jbm public (local)\n"
        "443/tcp                    ALLOW       Anywhere                   # jbm public (https)\n"
        "8000/tcp                   ALLOW       192.0.2.7                  # jbm public (proxy)\n"
        "8000/tcp (v6)              ALLOW       Anywhere (v6)              # jbm public (local)\n"
        "443/tcp (v6)               ALLOW       Anywhere (v6)              # jbm public (https)\n")
    assert networks.stale_port_rules(status, "jbm public", [[443, "any"]]) == [
        ["8000", "any"], ["8000", "192.0.2.7/32"]]
    assert networks.stale_port_rules(status, "jbm public", [["8000", "192.0.2.7/32"]]) == [
        ["8000", "any"], ["443", "any"]]
    assert networks.stale_port_rules(status, "jbm public", [
        [8000, "any"], [443, "any"], [8000, "192.0.2.7"]]) == []


def test_sshd_access_follows_allowusers_and_allowgroups_together():
    access = load_filter("sshd", "sshd_access").sshd_user_allowed
    assert access("root", ["root"], [], [])
    assert access("alice", ["alice"], ["root", "al*"], [])
    assert access("alice", ["alice"], ["alice@192.0.2.*"], [])
    assert not access("bob", ["bob"], ["root", "alice"], [])
    assert access("bob", ["bob", "admins"], [], ["admins"])
    # Both lists set: sshd wants both to pass.
    assert not access("bob", ["bob", "admins"], ["alice"], ["admins"])
    assert not access("alice", ["alice"], ["alice"], ["admins"])
