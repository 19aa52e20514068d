"""A Mapwright rule plugin in Python: each class implements one interface of the contract
(plugin-sdk/wit/plugin.wit, world `host-rules`), calling the rules in `rules.py`. The host
calls only the hooks `describe` lists; the others pass their input through."""

import json

import rules
from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import attributes, deprovision, groups, meta, username
from wit_world.imports import types


def refusal(e: rules.Refused) -> Err:
    return Err(types.Rejection(rule=e.rule, reason=e.reason))


class Meta(exports.Meta):
    def describe(self) -> meta.Info:
        return meta.Info(name="acme-rules-py", version="0.1.0", hooks=[types.Hook.USERNAME, types.Hook.GROUPS])

    def validate_config(self, config: str) -> None:
        try:
            rules.parse_config(config)
        except ValueError as e:
            raise Err(str(e))


class Username(exports.Username):
    def decide(self, ctx, config, user, proposed, current):
        try:
            name, why = rules.username(rules.parse_config(config), json.loads(user), proposed)
        except rules.Refused as e:
            raise refusal(e)
        return username.Decision(user_name=name, provenance=types.Provenance(rule="acme.local-part", reason=why))


class Groups(exports.Groups):
    def map_group(self, ctx, config, group, proposed):
        names, why = rules.map_group(rules.parse_config(config), group.display_name, list(proposed))
        return groups.GroupDecision(groups=names, provenance=types.Provenance(rule="acme.groups", reason=why))

    def user_memberships(self, ctx, config, user, is_new, proposed):
        add, remove = rules.memberships(rules.parse_config(config), list(proposed.add), list(proposed.remove))
        return groups.Memberships(add=add, remove=remove, provenance=None)


# The hooks this plugin does not list: never called, but the contract has them.
class Attributes(exports.Attributes):
    def map_attributes(self, ctx, config, user, proposed, current):
        return attributes.Decision(attributes=proposed, provenance=None)


class Deprovision(exports.Deprovision):
    def on_deprovision(self, ctx, config, user, trigger, proposed):
        return deprovision.Decision(action=proposed, provenance=None)

    def on_reactivate(self, ctx, config, user, proposed):
        return deprovision.Reactivation(restore=proposed, provenance=None)
