-- SQLite's 19: the guards' windows of destructive operations, shared by every replica, and
-- the leases that give background work to one replica at a time.
CREATE TABLE guard_spends (
    idp_id BIGINT NOT NULL REFERENCES idps(id) ON DELETE CASCADE,
    at_ms BIGINT NOT NULL
);
CREATE INDEX guard_spends_idp ON guard_spends(idp_id, at_ms);
CREATE TABLE leases (
    name TEXT COLLATE "C" PRIMARY KEY,
    holder TEXT COLLATE "C" NOT NULL,
    expires_ms BIGINT NOT NULL
);
