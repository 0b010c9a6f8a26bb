"""Checks of the users' network variables for the docker role, on the standard library.

WHY here: ansible.utils' ipaddr filters need `netaddr` on the controller; this one filter
needs nothing and gives the messages the role's assert prints, each naming the variable.
"""
import ipaddress
import re

# Linux interface names: at most 15 bytes (IFNAMSIZ - 1), no '/', ':' or whitespace.
BRIDGE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


def users_network_problems(subnet, gateway, bridge, blocked):
    """One message per bad value of the users' network settings ([] when all are good)."""
    problems = []
    network = None
    try:
        network = ipaddress.IPv4Network(str(subnet), strict=True)
    except ValueError as error:
        problems.append(f"docker_users_network_subnet={subnet!r} is not an IPv4 CIDR network "
                        f"(e.g. 10.250.0.0/16): {error}")
    if network is not None and network.num_addresses < 8:
        problems.append(f"docker_users_network_subnet={subnet!r} is too small for user servers "
                        f"(at most /29; one address per running server)")
    try:
        address = ipaddress.IPv4Address(str(gateway))
        if network is not None and (address not in network or address in
                                    (network.network_address, network.broadcast_address)):
            problems.append(f"docker_users_network_gateway={gateway!r} is not a host address of "
                            f"docker_users_network_subnet={subnet!r}")
    except ValueError:
        problems.append(f"docker_users_network_gateway={gateway!r} is not an IPv4 address "
                        f"(e.g. 10.250.0.1)")
    if not BRIDGE_NAME.match(str(bridge)):
        problems.append(f"docker_users_network_bridge={bridge!r} is not an interface name "
                        f"(1-15 letters, digits, '_', '.', '-')")
    return problems + ipv4_networks_problems("docker_users_blocked_destinations", blocked,
                                             "169.254.169.254/32")


def ipv4_networks_problems(name, values, example, what=""):
    """One message per entry of the list variable `name` that is not an IPv4 CIDR network, or one
    for a value that is no list ([] when all are good)."""
    if isinstance(values, str) or not isinstance(values, (list, tuple)):
        return [f"{name} must be a list of IPv4 CIDR networks (e.g. ['{example}']{what}), "
                f"got {values!r}"]
    problems = []
    for index, value in enumerate(values):
        try:
            ipaddress.IPv4Network(str(value), strict=True)
        except ValueError as error:
            problems.append(f"{name}[{index}]: {value!r} is not an IPv4 CIDR network "
                            f"(e.g. {example}): {error}")
    return problems


def users_ingress_problems(hub_address, hub_port, sources, swarm_node):
    """One message per bad value of who reaches the users' containers and where they reach the
    hub ([] when all are good). A swarm node needs an ingress source (the hub): without one no
    server on it could be reached."""
    problems = []
    try:
        ipaddress.IPv4Address(str(hub_address))
    except ValueError:
        problems.append(f"docker_users_hub_address={hub_address!r} is not an IPv4 address (the hub API's "
                        f"address as users' containers reach it: the users' network gateway, on a swarm "
                        f"the hub's swarm_node_address)")
    try:
        port = int(str(hub_port))
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        problems.append(f"docker_users_hub_port={hub_port!r} is not a TCP port (1-65535)")
    problems += ipv4_networks_problems("docker_users_ingress_sources", sources, "192.0.2.10/32",
                                       ", the hub's address")
    if swarm_node and isinstance(sources, (list, tuple)) and not sources:
        problems.append("docker_users_ingress_sources=[] on a swarm node: the hub could reach no "
                        "server on it; list the hub's address (its default, e.g. ['192.0.2.10/32'])")
    return problems


class FilterModule:
    """Filters: users_network_problems, users_ingress_problems."""

    def filters(self):
        return {"users_network_problems": users_network_problems,
                "users_ingress_problems": users_ingress_problems}
