"""CIDR checks for the firewall role, on the standard library's ipaddress.

WHY here: ansible.utils' ipaddr filters need the `netaddr` package on the controller; these
two small filters need nothing, and give the error messages the role's asserts print.
"""
import ipaddress


def cidr_problems(values, var_name="admin_networks"):
    """One message per entry of `values` that is not an IPv4/IPv6 network ('' when all are)."""
    if isinstance(values, str) or not isinstance(values, (list, tuple)):
        return [f"{var_name} must be a list of CIDR networks (e.g. ['192.0.2.0/24']), "
                f"got {values!r}"]
    if not values:
        return [f"{var_name} is empty: list at least one CIDR network (e.g. 192.0.2.0/24)"]
    problems = []
    for index, value in enumerate(values):
        try:
            ipaddress.ip_network(str(value), strict=True)
        except ValueError as error:
            problems.append(f"{var_name}[{index}]: {value!r} is not a CIDR network "
                            f"(e.g. 192.0.2.0/24 or 2001:db8::/32): {error}")
    return problems


def ip_in_networks(address, networks):
    """True when `address` lies in any of `networks` (invalid entries never match)."""
    try:
        ip = ipaddress.ip_address(str(address).strip())
    except ValueError:
        return False
    for network in networks or []:
        try:
            if ip in ipaddress.ip_network(str(network), strict=False):
                return True
        except ValueError:
            continue
    return False


def _network(value):
    try:
        return ipaddress.ip_network(str(value), strict=False)
    except ValueError:
        return None


def _tagged_rules(ufw_status):
    """(port, source, comment) of each commented rule in `ufw status` output. An IPv6 rule's
    line, marked (v6), gives the same port and source as its IPv4 twin when they match."""
    for line in str(ufw_status).splitlines():
        rule, _, comment = line.partition("#")
        fields = rule.replace("(v6)", " ").split()
        if comment and len(fields) >= 3:
            yield fields[0].split("/")[0], fields[-1], comment.strip()


def stale_sources(ufw_status, comment, wanted):
    """Sources of the `ufw status` rules tagged `# comment` that are no longer in `wanted`.

    WHY: ufw keeps a rule until it is deleted, so a network removed from admin_networks would
    keep its SSH access; the role deletes what this returns. ufw prints 10.0.0.1/32 as
    10.0.0.1, so sources are compared as networks, not as strings.
    """
    keep = {_network(value) for value in wanted or []}
    stale = []
    for _, source, tag in _tagged_rules(ufw_status):
        network = _network(source)
        if tag == comment and network is not None and network not in keep and source not in stale:
            stale.append(source)
    return stale


def _rule_source(value):
    """"any" for ufw's Anywhere, else the network (10.0.0.1 and 10.0.0.1/32 are the same)."""
    if str(value).lower() in ("any", "anywhere"):
        return "any"
    network = _network(value)
    return str(network) if network is not None else str(value)


def stale_port_rules(ufw_status, comment_prefix, wanted):
    """[port, source] of the `ufw status` rules whose comment starts with `comment_prefix` and
    that are not among the `wanted` [port, source] pairs (source "any" or a network).

    WHY: the public ports depend on the serve mode; after a change of mode (or port, or
    sources) the old mode's rules would stay open. An IPv6 rule is reported once, as
    deleting the rule by port and source removes both.
    """
    keep = {(str(port), _rule_source(source)) for port, source in wanted or []}
    stale = []
    for port, source, tag in _tagged_rules(ufw_status):
        pair = [port, _rule_source(source)]
        if tag.startswith(comment_prefix) and tuple(pair) not in keep and pair not in stale:
            stale.append(pair)
    return stale


# 7946 gossip is tcp and udp: one ufw rule without a protocol ("any") covers both.
SWARM_NODE_PORTS = (("7946", "any"), ("4789", "udp"))
SWARM_MANAGER_PORTS = (("2377", "tcp"),)


def swarm_rules(peers, hub_addresses, is_manager, published_ports, exporter_port, manager_extra_ports=()):
    """The [port, proto, source] allows of one swarm node: gossip and VXLAN from every other
    node, the manager's port (and `manager_extra_ports`, [port, proto] pairs: the homes' NFS)
    from the workers (on the manager), and on a worker the servers' published ports and the
    exporter's port from the hub only."""
    extra = tuple((str(port), proto) for port, proto in manager_extra_ports or ())
    ports = SWARM_NODE_PORTS + (SWARM_MANAGER_PORTS + extra if is_manager else ())
    rules = [[port, proto, str(peer)] for peer in peers or [] for port, proto in ports]
    rules += [[str(port), "tcp", str(hub)] for hub in hub_addresses or []
              for port in (published_ports, exporter_port)]
    return rules


class FilterModule:
    """Filters: cidr_problems, ip_in_networks, stale_sources, stale_port_rules, swarm_rules."""

    def filters(self):
        return {"cidr_problems": cidr_problems, "ip_in_networks": ip_in_networks,
                "stale_sources": stale_sources, "stale_port_rules": stale_port_rules,
                "swarm_rules": swarm_rules}
