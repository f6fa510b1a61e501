"""Read `tayori.toml` into typed `Settings`, reporting every problem at once.

The loader walks the dataclasses of `settings` by their type annotations instead of naming
keys, so a documented field is all it takes to add a key, and a key cannot be read without
being documented. It collects every problem before failing, because an admin fixing a config
wants the whole list, not one error per restart.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import os
import re
import socket
import tomllib
import types
from collections.abc import Iterator, Mapping
from dataclasses import MISSING, Field, dataclass, fields, is_dataclass, replace
from datetime import date, datetime, time
from enum import StrEnum
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tayori.config.settings import HostPort, Settings, StorageSettings, TlsSettings, WebSettings
from tayori.core.errors import ConfigError
from tayori.core.sizes import SIZE_EXAMPLES, parse_size

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG",
    "InvalidConfigError",
    "Kind",
    "Problem",
    "check_host",
    "config_path",
    "field_default",
    "field_kind",
    "format_value",
    "load_settings",
    "parse_hostport",
    "section_fields",
    "sections",
    "settings_from_mapping",
    "web_problems",
]

CONFIG_ENV = "TAYORI_CONFIG"
DEFAULT_CONFIG = Path("tayori.toml")

_NO_VALUE: Any = object()


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The config file to read: `--config`, else `$TAYORI_CONFIG`, else `./tayori.toml`."""
    if explicit:
        return Path(explicit)
    from_env = os.environ.get(CONFIG_ENV, "")
    return Path(from_env) if from_env else DEFAULT_CONFIG


# --- what the dataclasses declare ----------------------------------------------------------


class Kind(StrEnum):
    """How a field's TOML value is read; the value is the type name shown in docs and errors."""

    STRING = "string"
    INTEGER = "integer"
    SIZE = "size"
    SECONDS = "seconds"
    BOOLEAN = "boolean"
    PATH = "path"
    OPTIONAL_PATH = "path or empty"
    LISTENER = "host:port or empty"
    HOSTPORT_LIST = "list of host:port"
    STRING_LIST = "list of strings"
    HOSTPORT_MAP = "table of host:port"
    TABLE = "table"
    NUMBER = "number"
    CHOICE = "one of"
    TABLE_LIST = "list of tables"


def _is_table(annotation: Any) -> bool:
    return isinstance(annotation, type) and is_dataclass(annotation)


def nested_tables(cls: type[Any]) -> list[tuple[str, type[Any]]]:
    """Fields of a section that are tables of their own (`[submission.dnsbl]`)."""
    hints = get_type_hints(cls)
    return [(item.name, hints[item.name]) for item in fields(cls) if _is_table(hints[item.name])]


def top_sections() -> list[tuple[str, type[Any]]]:
    """The top-level `[section]` tables: every field of `Settings` whose type is a dataclass."""
    return nested_tables(Settings)


def sections() -> list[tuple[str, type[Any]]]:
    """Every table with its dotted name, each parent before its children (docs, templates)."""

    def walk(prefix: str, cls: type[Any]) -> list[tuple[str, type[Any]]]:
        found = [(prefix, cls)]
        for name, child in nested_tables(cls):
            found += walk(f"{prefix}.{name}", child)
        return found

    return [entry for name, cls in top_sections() for entry in walk(name, cls)]


def section_fields(cls: type[Any]) -> list[tuple[Field[Any], Kind]]:
    """The keys of one section with how each is read (nested tables are not keys)."""
    hints = get_type_hints(cls)
    return [
        (item, field_kind(item.name, hints[item.name]))
        for item in fields(cls)
        if not _is_table(hints[item.name])
    ]


def field_kind(name: str, annotation: Any) -> Kind:
    """Classify an annotation; an unsupported one is a programming error caught by the tests."""
    if annotation is bool:
        return Kind.BOOLEAN
    if annotation is int:
        return Kind.SIZE if name.endswith(("_size", "_bytes")) else Kind.INTEGER
    if annotation is float:
        return Kind.NUMBER if name.endswith(("_score", "weight")) else Kind.SECONDS
    if annotation is str:
        return Kind.STRING
    if annotation is Path:
        return Kind.PATH
    if isinstance(annotation, type) and issubclass(annotation, StrEnum):
        return Kind.CHOICE
    origin = get_origin(annotation)
    args = set(get_args(annotation))
    if origin in (Union, types.UnionType) and args == {HostPort, type(None)}:
        return Kind.LISTENER
    if origin in (Union, types.UnionType) and args == {Path, type(None)}:
        return Kind.OPTIONAL_PATH
    if origin is list and args == {HostPort}:
        return Kind.HOSTPORT_LIST
    if origin is list and args == {str}:
        return Kind.STRING_LIST
    if origin is list and len(args) == 1 and _is_table(next(iter(args))):
        return Kind.TABLE_LIST
    if origin is dict and get_args(annotation) == (str, HostPort):
        return Kind.HOSTPORT_MAP
    raise TypeError(f"setting {name}: the loader cannot read values of type {annotation!r}")


def field_default(item: Field[Any]) -> Any:
    if item.default is not MISSING:
        return item.default
    if item.default_factory is not MISSING:
        return item.default_factory()
    raise TypeError(f"setting {item.name} has no default")


# --- problems --------------------------------------------------------------------------------


def format_value(value: Any) -> str:
    """A value written the way it would appear in the TOML file."""
    if value is None:
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str | Path | HostPort):
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(format_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{key} = {format_value(item)}" for key, item in value.items())
        return "{ " + inner + " }" if inner else "{}"
    return json.dumps(str(value), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the config: the key, the value as written, and why."""

    key: str
    reason: str
    value: Any = _NO_VALUE

    def __str__(self) -> str:
        if self.value is _NO_VALUE:
            return f"{self.key}: {self.reason}"
        return f"{self.key} = {format_value(self.value)}: {self.reason}"


class InvalidConfigError(ConfigError):
    """Every problem found in one config, so `tayori config check` can list them all."""

    def __init__(self, source: Path | None, problems: list[Problem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        where = str(source) if source is not None else "configuration"
        count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
        lines = [f"{where}: {count}:"] + [f"  {problem}" for problem in problems]
        super().__init__("\n".join(lines))


class _BadValueError(ValueError):
    """Raised by a converter; the text is the reason part of a Problem."""


# --- reading values ---------------------------------------------------------------------------

_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_HOSTPORT_HELP = 'write "host:port", e.g. "127.0.0.1:25", "mail.example.jp:25" or "[::1]:25"'


def check_host(host: str) -> str:
    """An IP address or a host name (returned without a final dot); ValueError says why not."""
    if not host:
        raise _BadValueError(
            f"the host is missing; {_HOSTPORT_HELP} (0.0.0.0 or [::] for every address)"
        )
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return host
    if re.fullmatch(r"[0-9.]+", host):
        raise _BadValueError(f"{host} is not an IPv4 address")
    name = host.removesuffix(".")
    if len(name) > 253 or not all(_HOST_LABEL.match(label) for label in name.split(".")):
        raise _BadValueError(f"{host!r} is neither an IP address nor a host name")
    return name


def parse_hostport(text: str, default_port: int | None = None) -> HostPort:
    """Parse `host:port` or `[v6]:port`; ValueError says what is wrong and how to write it.

    `default_port` allows a bare host (`192.0.2.53` for a nameserver).
    """
    value = text.strip()
    port_text: str | None
    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        if not bracket:
            raise _BadValueError(f"missing ']' after the IPv6 address; {_HOSTPORT_HELP}")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise _BadValueError(f"{host!r} in brackets is not an IPv6 address") from None
        if rest and not rest.startswith(":"):
            raise _BadValueError(f"unexpected {rest!r} after ']'; {_HOSTPORT_HELP}")
        port_text = rest[1:] if rest else None
    elif value.count(":") > 1:
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            raise _BadValueError(
                "too many ':'; put IPv6 addresses in brackets, e.g. [::1]:25"
            ) from None
        if default_port is None:
            raise _BadValueError(
                f"the port is missing; put IPv6 addresses in brackets: [{value}]:PORT"
            )
        host, port_text = value, None
    else:
        host, colon, port_text = value.partition(":")
        if not colon:
            port_text = None
        host = check_host(host)
    if port_text is None:
        if default_port is None:
            raise _BadValueError(f"the port is missing; {_HOSTPORT_HELP}")
        return HostPort(host, default_port)
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise _BadValueError(f"the port must be a number from 1 to 65535, not {port_text!r}")
    return HostPort(host, int(port_text))


def _convert(kind: Kind, name: str, raw: Any, minimum: int | None = None) -> Any:
    """Turn one TOML value into the field's type, or raise _BadValueError with the reason."""
    if kind is Kind.BOOLEAN:
        if not isinstance(raw, bool):
            raise _BadValueError("must be true or false")
        return raw
    if kind is Kind.INTEGER:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise _BadValueError("must be a whole number")
        least = 1 if minimum is None else minimum
        if raw < least:
            raise _BadValueError(f"must be at least {least}")
        return raw
    if kind is Kind.SIZE:
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            raise _BadValueError(f"not a size; write e.g. {SIZE_EXAMPLES}")
        try:
            size = parse_size(raw)
        except ValueError:
            raise _BadValueError(f"not a size; write e.g. {SIZE_EXAMPLES}") from None
        if size < 1:
            raise _BadValueError("must be at least 1 byte")
        return size
    if kind is Kind.SECONDS:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise _BadValueError("must be a number of seconds, e.g. 300 or 0.5")
        seconds = float(raw)
        if not math.isfinite(seconds):
            raise _BadValueError("must be a finite number of seconds")
        if "timeout" in name and seconds <= 0:
            raise _BadValueError("a timeout must be more than 0 seconds")
        if seconds < 0:
            raise _BadValueError("cannot be negative")
        return seconds
    if kind is Kind.NUMBER:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise _BadValueError("must be a number, e.g. 2 or 2.5")
        if not math.isfinite(raw) or raw < 0:
            raise _BadValueError("must be a finite number, not negative")
        return float(raw)
    if kind is Kind.STRING_LIST:
        if not isinstance(raw, list) or not all(isinstance(i, str) and i for i in raw):
            raise _BadValueError('must be a list of strings, e.g. ["one.example", "two.example"]')
        return raw
    if kind is Kind.HOSTPORT_MAP:
        if not isinstance(raw, Mapping):
            raise _BadValueError('must be a table, e.g. { "example.org" = "relay.example.net:25" }')
        return raw  # entries are checked one by one by the caller, to name each bad one
    if not isinstance(raw, str) and kind is not Kind.HOSTPORT_LIST:
        raise _BadValueError('must be a string in quotes, e.g. "value"')
    if kind is Kind.STRING:
        return raw
    if kind is Kind.PATH:
        return Path(raw).expanduser() if raw else Path()
    if kind is Kind.OPTIONAL_PATH:
        return Path(raw).expanduser() if raw else None
    if kind is Kind.LISTENER:
        return parse_hostport(raw) if raw.strip() else None
    if not isinstance(raw, list):
        raise _BadValueError('must be a list of "host:port" strings, e.g. ["127.0.0.1:53"]')
    return raw  # items are checked one by one by the caller, to name each bad one


# --- the walk ----------------------------------------------------------------------------------


@dataclass
class _Reader:
    """Accumulates problems while reading one mapping into section dataclasses."""

    problems: list[Problem]

    def section(self, name: str, cls: type[Any], table: Mapping[str, Any] | None) -> Any:
        keyed = section_fields(cls)
        tables = nested_tables(cls)
        known = [item.name for item, _ in keyed] + [sub for sub, _ in tables]
        values: dict[str, Any] = {}
        for sub, sub_cls in tables:
            inner = (table or {}).get(sub)
            if inner is not None and not isinstance(inner, Mapping):
                self.problems.append(
                    Problem(f"{name}.{sub}", f"must be a table: write [{name}.{sub}]", inner)
                )
                inner = None
            values[sub] = self.section(f"{name}.{sub}", sub_cls, inner)
        for key, raw in (table or {}).items():
            if key not in known:
                self.problems.append(Problem(f"{name}.{key}", _unknown_key(name, key, cls), raw))
        hints = get_type_hints(cls)
        for item, kind in keyed:
            if table is None or item.name not in table:
                # A [listen] table names the listeners to run: those left out are off.
                if table is not None and kind is Kind.LISTENER:
                    values[item.name] = None
                continue
            raw = table[item.name]
            key = f"{name}.{item.name}"
            if kind in (Kind.CHOICE, Kind.TABLE_LIST):
                read = self._choice if kind is Kind.CHOICE else self._table_list
                value = read(key, hints[item.name], raw)
                if value is not _NO_VALUE:
                    values[item.name] = value
                continue
            try:
                value = _convert(kind, item.name, raw, item.metadata.get("minimum"))
                most = item.metadata.get("maximum")
                if most is not None and value > most:
                    raise _BadValueError(f"must be at most {most}")
            except _BadValueError as error:
                self.problems.append(Problem(key, str(error), raw))
                continue
            if kind is Kind.HOSTPORT_LIST:
                value = list(self._hostports(key, value))
            if kind is Kind.HOSTPORT_MAP:
                value = dict(self._hostport_map(key, value))
            values[item.name] = value
        return cls(**values)

    def _choice(self, key: str, enum: type[StrEnum], raw: Any) -> Any:
        choices = [member.value for member in enum]
        if isinstance(raw, str) and raw in choices:
            return enum(raw)
        self.problems.append(Problem(key, "must be one of " + ", ".join(choices), raw))
        return _NO_VALUE

    def _table_list(self, key: str, annotation: Any, raw: Any) -> Any:
        """A list of inline tables (`zones = [{zone = "…", weight = 2.0}]`), each read like a
        section, so its keys are checked and documented the same way."""
        (cls,) = get_args(annotation)
        if not isinstance(raw, list) or not all(isinstance(item, Mapping) for item in raw):
            self.problems.append(Problem(key, "must be a list of tables, e.g. [{ … }]", raw))
            return _NO_VALUE
        before = len(self.problems)
        items = [self.section(f"{key}[{index}]", cls, item) for index, item in enumerate(raw)]
        for index, entry in enumerate(raw):
            for field_item in fields(cls):
                if field_item.metadata.get("required") and field_item.name not in entry:
                    self.problems.append(
                        Problem(f"{key}[{index}].{field_item.name}", "is required")
                    )
        return items if len(self.problems) == before else _NO_VALUE

    def _hostports(self, key: str, items: list[Any]) -> Iterator[HostPort]:
        for index, raw in enumerate(items):
            try:
                if not isinstance(raw, str):
                    raise _BadValueError('must be a string "host:port"')
                yield parse_hostport(raw, default_port=53)
            except _BadValueError as error:
                self.problems.append(Problem(f"{key}[{index}]", str(error), raw))

    def _hostport_map(self, key: str, table: Mapping[str, Any]) -> Iterator[tuple[str, HostPort]]:
        for domain, raw in table.items():
            try:
                if domain != "*":
                    check_host(domain)
                if not isinstance(raw, str):
                    raise _BadValueError('must be a string "host:port"')
                yield domain.lower(), parse_hostport(raw)
            except _BadValueError as error:
                self.problems.append(Problem(f"{key}.{domain}", str(error), raw))


def _key_index() -> dict[str, str]:
    """Every key name to the section it lives in, to point at the right table."""
    return {item.name: name for name, cls in sections() for item, _ in section_fields(cls)}


def _unknown_key(section: str, key: str, cls: type[Any]) -> str:
    close = difflib.get_close_matches(key, [item.name for item, _ in section_fields(cls)], 1)
    if close:
        return f"unknown key; did you mean {section}.{close[0]}?"
    home = _key_index().get(key)
    if home is not None:
        return f"unknown key in [{section}]; did you mean {home}.{key}?"
    return f"unknown key in [{section}]"


def _unknown_top(key: str, raw: Any) -> Problem:
    names = [name for name, _ in top_sections()]
    listed = ", ".join(f"[{name}]" for name in names)
    if isinstance(raw, Mapping):
        close = difflib.get_close_matches(key, names, 1)
        hint = f"; did you mean [{close[0]}]?" if close else f"; sections are {listed}"
        return Problem(key, f"unknown section [{key}]{hint}")
    home = _key_index().get(key)
    if home is not None:
        return Problem(key, f"keys belong in a section; did you mean {home}.{key}?", raw)
    return Problem(key, f"unknown key; settings go in the sections {listed}", raw)


def settings_from_mapping(data: Mapping[str, Any], source: Path | None = None) -> Settings:
    """Validate a parsed TOML document and resolve defaults that depend on the machine.

    Relative paths are taken from the config file's directory (the working directory when
    there is no file), so a config means the same wherever the command is started from.
    Raises InvalidConfigError listing every problem.
    """
    problems: list[Problem] = []
    reader = _Reader(problems)
    known = dict(top_sections())
    for key, raw in data.items():
        if key not in known:
            problems.append(_unknown_top(key, raw))
    values: dict[str, Any] = {}
    for name, cls in known.items():
        table = data.get(name)
        if table is not None and not isinstance(table, Mapping):
            problems.append(
                Problem(name, f"must be a table: write [{name}] on its own line", table)
            )
            table = None
        values[name] = reader.section(name, cls, table)
    settings = Settings(**values, source=source)
    base = source.parent.absolute() if source is not None else Path.cwd()
    settings = _resolve(settings, base, data, problems)
    if problems:
        raise InvalidConfigError(source, problems)
    return settings


def _raw(data: Mapping[str, Any], section: str, key: str) -> Any:
    table = data.get(section)
    if isinstance(table, Mapping) and key in table:
        return table[key]
    return _NO_VALUE


def _resolve(
    settings: Settings, base: Path, data: Mapping[str, Any], problems: list[Problem]
) -> Settings:
    """Fill machine-dependent defaults and check what single values cannot show."""
    data_dir = (base / settings.server.data_dir).resolve()
    raw_dir = _raw(data, "server", "data_dir")
    if data_dir.exists() and not data_dir.is_dir():
        problems.append(Problem("server.data_dir", f"{data_dir} is not a directory", raw_dir))
    elif not data_dir.exists():
        problems.append(
            Problem(
                "server.data_dir",
                f"directory {data_dir} does not exist; create an instance there with "
                f"`tayori init --data-dir {data_dir}`",
                raw_dir if raw_dir is not _NO_VALUE else str(settings.server.data_dir),
            )
        )
    hostname = settings.server.hostname
    if hostname:
        try:
            hostname = check_host(hostname)
        except _BadValueError as error:
            problems.append(Problem("server.hostname", str(error), hostname))
    else:
        hostname = socket.getfqdn()
    _check_listeners(settings, problems)
    _check_networks(settings, problems)
    problems.extend(web_problems(settings.web))
    return replace(
        settings,
        server=replace(settings.server, hostname=hostname, data_dir=data_dir),
        tls=_resolve_tls(settings, data_dir, problems),
        storage=StorageSettings(url=_resolve_storage_url(settings, data_dir, problems)),
    )


def _resolve_tls(settings: Settings, data_dir: Path, problems: list[Problem]) -> TlsSettings:
    paths: dict[str, Path | None] = {}
    for key, default_name in (("cert", "cert.pem"), ("key", "key.pem")):
        given: Path | None = getattr(settings.tls, key)
        if given is None:
            fallback = data_dir / "tls" / default_name
            paths[key] = fallback if fallback.is_file() else None
            continue
        path = data_dir / given
        if not path.is_file():
            problems.append(Problem(f"tls.{key}", f"file {path} not found", str(given)))
        paths[key] = path
    if (paths["cert"] is None) != (paths["key"] is None):
        have, missing = ("cert", "key") if paths["cert"] is not None else ("key", "cert")
        problems.append(
            Problem(
                f"tls.{missing}",
                f"tls.{have} is set but tls.{missing} is not (and {data_dir}/tls/{missing}.pem "
                "does not exist); set both or neither",
            )
        )
    return TlsSettings(cert=paths["cert"], key=paths["key"])


_URL_HELP = "write sqlite:///PATH or postgresql://USER@HOST/DB"


def _redacted(url: str) -> str:
    """A URL fit for an error message: a password in it is replaced."""
    return re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", url)


def _resolve_storage_url(settings: Settings, data_dir: Path, problems: list[Problem]) -> str:
    url = settings.storage.url.strip()
    scheme = url.partition("://")[0].lower().split("+")[0]
    if url and scheme not in ("sqlite", "postgresql", "postgres"):
        problems.append(Problem("storage.url", f"unsupported store; {_URL_HELP}", _redacted(url)))
        return url
    # The storage layer owns its URL forms (the default file, relative SQLite paths taken
    # from the data dir); importing it lazily keeps config from loading database drivers
    # for commands that never open a store.
    from tayori.storage.factory import storage_url

    try:
        return storage_url(url, data_dir)
    except ConfigError as error:
        reason = str(error).removeprefix("storage.url ")
        problems.append(Problem("storage.url", reason, _redacted(url)))
        return url


def _check_listeners(settings: Settings, problems: list[Problem]) -> None:
    """Two listeners on one address cannot both bind; say which ones before `serve` fails."""
    seen: dict[int, list[tuple[str, HostPort]]] = {}
    for item in fields(settings.listen):
        address: HostPort | None = getattr(settings.listen, item.name)
        if address is None:
            continue
        for other_name, other in seen.get(address.port, []):
            wildcard = {"0.0.0.0", "::"} & {address.host, other.host}
            if address.host == other.host or wildcard:
                problems.append(
                    Problem(
                        f"listen.{item.name}",
                        f"listen.{other_name} uses {other} already; "
                        "each listener needs its own host:port",
                        str(address),
                    )
                )
        seen.setdefault(address.port, []).append((item.name, address))


_NETWORK_HELP = "write an address or a network, e.g. 192.0.2.25, 192.0.2.0/24 or 2001:db8::/32"


def _check_networks(settings: Settings, problems: list[Problem]) -> None:
    """Address lists that `serve` parses at start-up (`tayori.pipeline.inbound`,
    `tayori.web.security`): a bad entry is found by `tayori config check` too, named by its
    index like any other list item, instead of only stopping `serve`. Each list is read the
    way its user reads it: the inbound pipeline strips spaces, the web layer does not."""
    lists = (
        ("inbound.trusted_networks", settings.inbound.trusted_networks, True),
        ("web.trusted_proxies", settings.web.trusted_proxies, False),
    )
    for key, items, strip in lists:
        for index, item in enumerate(items):
            try:
                ipaddress.ip_network(item.strip() if strip else item, strict=False)
            except ValueError:
                problems.append(
                    Problem(f"{key}[{index}]", f"not an address or network; {_NETWORK_HELP}", item)
                )


WEB_LANGUAGES = ("ja", "en")
"""The languages the webmail has catalogues for (`tayori.web.i18n.LANGUAGES`)."""


def web_problems(web: WebSettings) -> list[Problem]:
    """`[web]` values only a lookup can judge: the default time zone must exist in the time
    zone database, the default language must be one the webmail speaks, and `public_url`
    must be an http(s) URL. `serve` refuses to start on these
    (`tayori.web.context.check_web_settings` calls this very function), so `tayori config
    check` reports exactly what `serve` would refuse, before a restart finds out.
    `web.trusted_proxies` is checked with the other address lists (`_check_networks`)."""
    problems: list[Problem] = []
    try:
        ZoneInfo(web.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(
            Problem(
                "web.time_zone",
                "not a known time zone; write a name from the time zone database, e.g. "
                "Asia/Tokyo or UTC (the case matters)",
                web.time_zone,
            )
        )
    if web.language not in WEB_LANGUAGES:
        problems.append(Problem("web.language", 'must be "ja" or "en"', web.language))
    if web.public_url and not web.public_url.startswith(("https://", "http://")):
        problems.append(
            Problem(
                "web.public_url",
                "must start with https:// (or http://), e.g. https://mail.example.jp/",
                web.public_url,
            )
        )
    return problems


def load_settings(path: Path) -> Settings:
    """Read and validate one TOML file. Raises ConfigError with text fit for the admin."""
    try:
        with path.open("rb") as stream:
            data = tomllib.load(stream)
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} not found; create one with `tayori init`, or name it with "
            f"--config FILE or {CONFIG_ENV}"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid TOML: the file is not UTF-8") from None
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    return settings_from_mapping(data, path)
