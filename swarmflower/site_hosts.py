"""Where each site of a new swarm listens and how the others reach it (`init --hosts`).

A site on its own machine binds one interface (`host`, never every
interface unless it says `0.0.0.0`/`::`), on `port`, and the others dial it
at `advertise` (a DNS name or an address behind NAT; by default `host`).
Its certificate names both, so the TLS hostname check passes whichever the
others dial. Given as a comma-separated list (one host per site, ports
`BASE+K`) or a TOML file with one `[[site]]` table per site.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarmflower.errors import ConfigError

_DNS_NAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_LOOPBACK_NAMES = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class SiteAddress:
    """One site's network place: the interface it binds, its port, and the
    name or address the other sites dial."""

    host: str
    port: int
    advertise: str = ""

    @property
    def listen(self) -> str:
        return _join(self.host, self.port)

    @property
    def dialled(self) -> str:
        """`host:port` as the other sites dial it."""
        return _join(self.advertise or self.host, self.port)

    def cert_hosts(self) -> tuple[str, ...]:
        """The names and addresses the site's certificate must carry."""
        names = [n for n in (self.host, self.advertise) if n and not _is_any(n)]
        if any(_is_loopback(n) for n in names):
            names += _LOOPBACK_NAMES  # local tests dial either spelling
        return tuple(dict.fromkeys(names))


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _is_any(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_host(host: str, what: str) -> str:
    """An IP address or a DNS name, or one `ConfigError` naming `what`."""
    host = host.strip()
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    if not _DNS_NAME.match(host):
        raise ConfigError(f"{what}: {host!r} is neither an IP address nor a DNS name")
    return host


def same_host(count: int, host: str, base_port: int) -> list[SiteAddress]:
    """`count` sites on one machine: `host`, ports BASE+1..BASE+N."""
    return [SiteAddress(host, base_port + k) for k in range(1, count + 1)]


def parse_hosts(value: str, base_port: int) -> list[SiteAddress]:
    """`--hosts`: `A,B,C` (site K on host K, port BASE+K) or a TOML file."""
    path = Path(value)
    if value.endswith(".toml") or path.is_file():
        return _from_file(path, base_port)
    hosts = [h.strip() for h in value.split(",")]
    if not all(hosts):
        raise ConfigError(f"--hosts: an empty name in {value!r}")
    sites = [
        SiteAddress(check_host(h, f"--hosts site {k}"), base_port + k)
        for k, h in enumerate(hosts, start=1)
    ]
    return _checked(sites, "--hosts")


def _from_file(path: Path, base_port: int) -> list[SiteAddress]:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such hosts file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable TOML file ({exc})") from None
    tables = data.get("site")
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"{path}: needs one [[site]] table per site (host, port)")
    sites = [
        _site_entry(table, f"{path}: site {k}", base_port + k)
        for k, table in enumerate(tables, start=1)
    ]
    return _checked(sites, str(path))


def _site_entry(table: Any, where: str, default_port: int) -> SiteAddress:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    unknown = sorted(set(table) - {"host", "port", "advertise"})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    host = table.get("host")
    if not isinstance(host, str):
        raise ConfigError(f"{where}: 'host' (a string) is required")
    port = table.get("port", default_port)
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise ConfigError(f"{where}: 'port' must be 1..65535, got {port!r}")
    advertise = table.get("advertise", "")
    if not isinstance(advertise, str):
        raise ConfigError(f"{where}: 'advertise' must be a string")
    return SiteAddress(
        check_host(host, f"{where} host"),
        port,
        check_host(advertise, f"{where} advertise") if advertise else "",
    )


def _checked(sites: Sequence[SiteAddress], where: str) -> list[SiteAddress]:
    """No two sites dialled at one place; a site on every interface says
    where it can be reached."""
    for k, site in enumerate(sites, start=1):
        if _is_any(site.host) and not site.advertise:
            raise ConfigError(
                f"{where}: site {k} listens on every interface ({site.host}): "
                "give its 'advertise' name or address, which the others dial"
            )
    seen: dict[str, int] = {}
    for k, site in enumerate(sites, start=1):
        if site.dialled in seen:
            first = seen[site.dialled]
            raise ConfigError(
                f"{where}: sites {first} and {k} are both at {site.dialled}"
            )
        seen[site.dialled] = k
    return list(sites)
