"""The rules, tested natively: `python -m unittest` (no WebAssembly needed)."""

import unittest

import rules

CONFIG = rules.parse_config('{"domains": ["acme.com"], "groups": {"Dev users": "software_dev"}, "defaults": ["app-users"]}')


def user(email):
    return {"userName": "x", "emails": [{"value": email, "primary": True}]}


class Rules(unittest.TestCase):
    def test_the_username_is_the_local_part_lower_cased(self):
        self.assertEqual(rules.username(CONFIG, user("Jane.Doe@acme.com"), "x"), ("jane.doe", "x → jane.doe"))

    def test_other_domains_and_users_without_email_are_refused(self):
        with self.assertRaises(rules.Refused) as e:
            rules.username(CONFIG, user("jane@example.org"), "x")
        self.assertEqual(e.exception.rule, "acme.domain")
        with self.assertRaises(rules.Refused):
            rules.username(CONFIG, {"userName": "x"}, "x")

    def test_groups_map_by_name_and_everyone_gets_the_defaults(self):
        self.assertEqual(rules.map_group(CONFIG, "Dev users", ["Dev users"])[0], ["software_dev"])
        self.assertEqual(rules.map_group(CONFIG, "Marketing", ["Marketing"])[0], [])
        # After another entry: the names it proposed are mapped, not the IdP's.
        self.assertEqual(rules.map_group(CONFIG, "dev", ["Dev users", "x"])[0], ["software_dev"])
        self.assertEqual(rules.memberships(CONFIG, ["x"], ["app-users"]), (["x", "app-users"], []))

    def test_a_bad_configuration_is_refused(self):
        with self.assertRaisesRegex(ValueError, "unknown keys: domain"):
            rules.parse_config('{"domain": "acme.com"}')
        with self.assertRaisesRegex(ValueError, "domains"):
            rules.parse_config('{"domains": [1]}')
        with self.assertRaisesRegex(ValueError, "defaults"):
            rules.parse_config('{"defaults": "app-users"}')


if __name__ == "__main__":
    unittest.main()
