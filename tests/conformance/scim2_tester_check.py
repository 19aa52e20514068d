"""Runs the external conformance checker scim2-tester against a live Mapwright connection.

Usage: scim2_tester_check.py BASE_URL TOKEN

Exits non-zero when any check ends in ERROR or CRITICAL, or when no CRUD check ran at all
(scim2-tester skips every CRUD check when discovery fails, which would otherwise look green).
Checks we consider wrong are listed in KNOWN_WRONG with the reason; they are reported but do
not fail the run.
"""

import sys
from collections import Counter

import httpx2
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import check_server
from scim2_tester.utils import Status

FAILING = {Status.ERROR, Status.CRITICAL}

# title prefix -> why we consider the check wrong (kept empty unless a check is wrong).
KNOWN_WRONG: dict[str, str] = {}


def main() -> int:
    base, token = sys.argv[1], sys.argv[2]
    http = httpx2.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    client = SyncSCIMClient(http)
    results = check_server(client)
    counts = Counter(r.status.name for r in results)
    failed = []
    for r in results:
        if r.status in FAILING:
            excused = next((why for t, why in KNOWN_WRONG.items() if r.title.startswith(t)), None)
            marker = "EXCUSED" if excused else "FAILED"
            print(f"{marker} [{r.status.name}] {r.title}: {r.reason}" + (f" ({excused})" if excused else ""))
            if not excused:
                failed.append(r)
        elif r.status not in {Status.SUCCESS}:
            print(f"note [{r.status.name}] {r.title}: {r.reason}")
    crud = [r for r in results if any(str(t).startswith("crud") for t in (r.tags or []))]
    print(f"scim2-tester: {dict(counts)}; {len(crud)} CRUD checks")
    if not crud:
        print("FAILED: no CRUD check ran (discovery must have failed)")
        return 1
    passed = len(results) - len(failed)
    print(f"{passed} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
