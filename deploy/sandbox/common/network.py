"""Which IP a request counts as coming from, and whether an API key's IP binding admits it: the same rule for
every exchange's sandbox."""

import ipaddress
from collections.abc import Sequence

from deploy.sandbox.common.state import EgressRoute


def effective_client_ip(peer_ip: str, egress_ip: str, routes: Sequence[EgressRoute] = ()) -> str:
    """Requests on loopback stand for Hash7's egress, so IP binding is exercised locally; so do those from a route's
    network (a container network), as the route says. The first route whose network holds the caller wins."""
    try:
        address = ipaddress.ip_address(peer_ip)
    except ValueError:
        return peer_ip
    for route in routes:
        if address in route.callers:
            return route.egress_ip or egress_ip
    return egress_ip if address.is_loopback else peer_ip


def ip_is_bound(ip: str, bound_entries: list[str]) -> bool:
    """Whether ip is one of a key's bound hosts or inside one of its networks (as every supported exchange binds
    keys, e.g. shared/adapters/htx/README.md#key-rules)."""
    address = ipaddress.ip_address(ip)
    for entry in bound_entries:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False
