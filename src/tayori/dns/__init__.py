"""DNS: the `Resolver` edge every lookup goes through, its dnspython implementation, and the
DNSBL helpers (`tayori.dns.dnsbl`). Tests run the real resolver against the loopback server
in `tayori.testing.dns_server`."""

from tayori.dns.resolver import (
    DnsAnswer,
    DnsPythonResolver,
    DnsStatus,
    DomainExistence,
    IPAddress,
    Mx,
    MxAnswer,
    Resolver,
)

__all__ = [
    "DnsAnswer",
    "DnsPythonResolver",
    "DnsStatus",
    "DomainExistence",
    "IPAddress",
    "Mx",
    "MxAnswer",
    "Resolver",
]
