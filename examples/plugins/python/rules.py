"""The rules of a Mapwright plugin in Python, as plain functions: no WebAssembly needed to test
them (`python -m unittest`). `app.py` wires them to the contract's exports.

The rules here: the username is the primary email's local part, lower-cased, from one of the
configured domains (others are refused); a group name listed in `groups` becomes that
application group, any other is not synced; everyone gets the `defaults` groups. Group names
are the ones the previous chain entry proposed (the IdP group's name when this entry comes
first), so the plugin composes with the entries before it.

Configuration (JSON, the chain entry's `config`):
    {"domains": ["acme.com"], "groups": {"Dev users": "software_dev"}, "defaults": ["app-users"]}
"""

import json
from dataclasses import dataclass, field


class Refused(Exception):
    """A refusal: the IdP's request fails with 400 and this reason."""

    def __init__(self, rule: str, reason: str):
        super().__init__(f"{rule}: {reason}")
        self.rule = rule
        self.reason = reason


@dataclass
class Config:
    domains: list = field(default_factory=list)
    groups: dict = field(default_factory=dict)
    defaults: list = field(default_factory=list)


def parse_config(text: str) -> Config:
    """Parses and checks a configuration; raises ValueError saying what is wrong."""
    raw = json.loads(text or "null") or {}
    if not isinstance(raw, dict):
        raise ValueError("the configuration must be an object")
    unknown = sorted(set(raw) - {"domains", "groups", "defaults"})
    if unknown:
        raise ValueError(f"unknown keys: {', '.join(unknown)}")
    domains = raw.get("domains", [])
    if not isinstance(domains, list) or not all(isinstance(d, str) for d in domains):
        raise ValueError("domains: a list of domains")
    groups = raw.get("groups", {})
    if not isinstance(groups, dict) or not all(isinstance(g, str) for g in groups.values()):
        raise ValueError("groups: IdP group name → application group name")
    defaults = raw.get("defaults", [])
    if not isinstance(defaults, list) or not all(isinstance(g, str) for g in defaults):
        raise ValueError("defaults: a list of application group names")
    return Config([d.lower() for d in domains], dict(groups), list(defaults))


def primary_email(user: dict):
    emails = user.get("emails") or []
    primary = next((e for e in emails if e.get("primary")), emails[0] if emails else None)
    return primary.get("value") if primary else None


def username(config: Config, user: dict, proposed: str) -> tuple:
    """(userName, reason)."""
    email = primary_email(user)
    if not email:
        raise Refused("acme.email", "the user has no email address")
    local, _, domain = email.partition("@")
    if config.domains and domain.lower() not in config.domains:
        raise Refused("acme.domain", f"{domain} is not an Acme domain")
    name = local.lower()
    return name, f"{proposed} → {name}"


def map_group(config: Config, display_name: str, proposed: list) -> tuple:
    """(application groups, reason)."""
    to = list(dict.fromkeys(config.groups[n] for n in proposed if n in config.groups))
    if to:
        return to, f"{', '.join(proposed)} → {', '.join(to)}"
    return [], f"'{display_name}' is not synced"


def memberships(config: Config, add: list, remove: list) -> tuple:
    """(add, remove): the defaults for everyone."""
    added = list(dict.fromkeys(add + config.defaults))
    return added, [g for g in remove if g not in config.defaults]
