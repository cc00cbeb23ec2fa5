-- XP Bot schema. Applied at every start-up (under an advisory lock, in one
-- transaction): every statement here must be safe to run again on a database
-- that already holds data. Changes to existing objects go in guarded blocks
-- keyed on schema_version, never by editing a CREATE TABLE above them.

CREATE TABLE IF NOT EXISTS schema_version (
    version    integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- One row per guild, created with the defaults the first time it is needed.
CREATE TABLE IF NOT EXISTS config (
    guild_id      bigint   PRIMARY KEY,
    rp_channels   bigint[] NOT NULL DEFAULT '{}',
    hf_channels   bigint[] NOT NULL DEFAULT '{}',
    char_per_rp   integer  NOT NULL DEFAULT 240 CHECK (char_per_rp   BETWEEN 1 AND 1000000),
    daily_rp_cap  integer  NOT NULL DEFAULT 10  CHECK (daily_rp_cap  BETWEEN 1 AND 1000000),
    hf_attempt_xp integer  NOT NULL DEFAULT 1   CHECK (hf_attempt_xp BETWEEN 0 AND 1000000),
    hf_success_xp integer  NOT NULL DEFAULT 5   CHECK (hf_success_xp BETWEEN 0 AND 1000000),
    daily_hf_cap  integer  NOT NULL DEFAULT 10  CHECK (daily_hf_cap  BETWEEN 1 AND 1000000),
    -- Level-up announcements: in the channel of the message ('message'), in
    -- levelup_channel ('channel'), or not at all ('off').
    levelup_mode    text   NOT NULL DEFAULT 'message' CHECK (levelup_mode IN ('message', 'channel', 'off')),
    levelup_channel bigint CHECK (levelup_mode <> 'channel' OR levelup_channel IS NOT NULL),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Every settings change: who, when, which setting, from what to what.
CREATE TABLE IF NOT EXISTS settings_log (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    guild_id   bigint NOT NULL,
    changed_by bigint NOT NULL,
    setting    text   NOT NULL,
    old_value  jsonb,
    new_value  jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS settings_log_guild_idx ON settings_log (guild_id, created_at DESC);

-- A player in one guild: their active character, time zone and last daily reset.
CREATE TABLE IF NOT EXISTS users (
    guild_id            bigint NOT NULL,
    user_id             bigint NOT NULL,
    active_character_id bigint,
    timezone            text   NOT NULL DEFAULT 'UTC',
    last_xp_reset       date,
    PRIMARY KEY (guild_id, user_id)
);

CREATE TABLE IF NOT EXISTS characters (
    id          bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    guild_id    bigint  NOT NULL,
    user_id     bigint  NOT NULL,
    name        text    NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100 AND name = btrim(name)),
    xp          bigint  NOT NULL DEFAULT 0 CHECK (xp BETWEEN 0 AND 1000000000000),
    daily_xp    integer NOT NULL DEFAULT 0 CHECK (daily_xp >= 0),
    daily_hf    integer NOT NULL DEFAULT 0 CHECK (daily_hf >= 0),
    char_buffer integer NOT NULL DEFAULT 0 CHECK (char_buffer >= 0),
    image_url   text    CHECK (image_url ~* '^https?://[^[:space:]]+$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (guild_id, user_id) REFERENCES users (guild_id, user_id) ON DELETE CASCADE,
    UNIQUE (guild_id, user_id, id)
);

-- Profiles and retiring (added in schema version 2; ADD COLUMN IF NOT EXISTS upgrades a
-- version-1 database in place). A retired character keeps its XP and history but earns
-- nothing; retired_at is NULL for a character in play.
ALTER TABLE characters ADD COLUMN IF NOT EXISTS sheet_url text
    CHECK (sheet_url ~* '^https?://[^[:space:]]+$');
ALTER TABLE characters ADD COLUMN IF NOT EXISTS retired_at timestamptz;

-- Names are unique per player per guild among characters in play, ignoring case: the
-- database's job. (Version 1 made them unique among all; that index is replaced.)
CREATE UNIQUE INDEX IF NOT EXISTS characters_owner_live_name_key
    ON characters (guild_id, user_id, lower(name)) WHERE retired_at IS NULL;
DROP INDEX IF EXISTS characters_owner_name_key;
-- HF events name a character guild-wide; autocomplete looks names up by what they start
-- with (text_pattern_ops: a prefix is an index range whatever the collation).
DO $$
BEGIN  -- databases of earlier versions have it without text_pattern_ops: rebuild it once
    IF EXISTS (SELECT 1 FROM pg_indexes WHERE indexname = 'characters_guild_name_idx'
                AND indexdef NOT LIKE '%text_pattern_ops%') THEN
        DROP INDEX characters_guild_name_idx;
    END IF;
END
$$;
CREATE INDEX IF NOT EXISTS characters_guild_name_idx ON characters (guild_id, lower(name) text_pattern_ops);
-- Misspelt names (version 6): each name's letter signature and casefolded length, written by
-- the bot with every name it writes, and by Database.sign_names for any it finds without
-- (what the bits mean: rules.py, letter_signature). A misspelt lookup reads this index alone and compares only
-- names whose signature shares enough bits with the text's. A name without one (NULL: just
-- written or renamed, by anyone) is always compared: a missing signature costs time, never
-- a match.
ALTER TABLE characters ADD COLUMN IF NOT EXISTS name_letters bit(128);
ALTER TABLE characters ADD COLUMN IF NOT EXISTS name_length smallint;
-- The transaction that last wrote the name: a process keeping a guild's signatures in memory
-- re-reads only the names written since it last looked (name_index.py).
ALTER TABLE characters ADD COLUMN IF NOT EXISTS name_xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX IF NOT EXISTS characters_guild_name_xid_idx ON characters (guild_id, name_xid);
CREATE INDEX IF NOT EXISTS characters_guild_letters_idx
    ON characters (guild_id, name_length) INCLUDE (name_letters, user_id, retired_at, name);
CREATE INDEX IF NOT EXISTS characters_unsigned_idx ON characters (guild_id, id) WHERE name_letters IS NULL;
-- Autocomplete in a large guild: the keys of each name's three-letter runs (written with the
-- signature; database.py, _trigram_keys), so "names containing what was typed" is an index
-- lookup, not a read of the whole guild.
ALTER TABLE characters ADD COLUMN IF NOT EXISTS name_trigrams int[];
CREATE INDEX IF NOT EXISTS characters_name_trigrams_idx ON characters USING gin (name_trigrams);
CREATE OR REPLACE FUNCTION characters_unsign() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.name_letters := NULL;  -- the old name's: the bot signs the new one (or sign_names later)
    NEW.name_length := NULL;
    NEW.name_trigrams := NULL;
    NEW.name_xid := pg_current_xact_id();
    RETURN NEW;
END
$$;
CREATE OR REPLACE TRIGGER characters_renamed_unsign BEFORE UPDATE OF name ON characters
    FOR EACH ROW WHEN (OLD.name IS DISTINCT FROM NEW.name) EXECUTE FUNCTION characters_unsign();
-- The leaderboard: characters in play by XP, ties oldest first. Its pages are read after or
-- before a given row ((-xp, id) compared as one key), so a deep page is as cheap as the first.
CREATE INDEX IF NOT EXISTS characters_leaderboard_idx ON characters (guild_id, (-xp), id) WHERE retired_at IS NULL;
DROP INDEX IF EXISTS characters_guild_xp_idx;
-- How many characters each guild has in play, kept by the database whoever adds, deletes,
-- retires or restores them (version 6): the leaderboard's total without counting a large
-- guild at every page. Filled once from the characters when the table is new.
DO $$
BEGIN
    IF to_regclass('guild_character_counts') IS NULL THEN
        CREATE TABLE guild_character_counts (
            guild_id bigint PRIMARY KEY,
            in_play  bigint NOT NULL CHECK (in_play >= 0)
        );
        INSERT INTO guild_character_counts
        SELECT guild_id, count(*) FROM characters WHERE retired_at IS NULL GROUP BY guild_id;
    END IF;
END
$$;
CREATE OR REPLACE FUNCTION count_characters_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO guild_character_counts AS n (guild_id, in_play)
    SELECT guild_id, count(*) FROM added WHERE retired_at IS NULL GROUP BY guild_id ORDER BY guild_id
    ON CONFLICT (guild_id) DO UPDATE SET in_play = n.in_play + EXCLUDED.in_play;
    RETURN NULL;
END
$$;
CREATE OR REPLACE FUNCTION count_characters_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE guild_character_counts n SET in_play = n.in_play - r.gone
      FROM (SELECT guild_id, count(*) AS gone FROM removed WHERE retired_at IS NULL GROUP BY guild_id) r
     WHERE n.guild_id = r.guild_id;
    RETURN NULL;
END
$$;
CREATE OR REPLACE FUNCTION count_characters_retired() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO guild_character_counts AS n (guild_id, in_play)
    VALUES (NEW.guild_id, CASE WHEN NEW.retired_at IS NULL THEN 1 ELSE 0 END)
    ON CONFLICT (guild_id) DO UPDATE
        SET in_play = n.in_play + CASE WHEN NEW.retired_at IS NULL THEN 1 ELSE -1 END;
    RETURN NULL;
END
$$;
CREATE OR REPLACE FUNCTION count_characters_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM guild_character_counts;
    RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER characters_count_added AFTER INSERT ON characters
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION count_characters_added();
CREATE OR REPLACE TRIGGER characters_count_removed AFTER DELETE ON characters
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION count_characters_removed();
CREATE OR REPLACE TRIGGER characters_count_retired AFTER UPDATE OF retired_at ON characters
    FOR EACH ROW WHEN ((OLD.retired_at IS NULL) <> (NEW.retired_at IS NULL))
    EXECUTE FUNCTION count_characters_retired();
CREATE OR REPLACE TRIGGER characters_count_truncated AFTER TRUNCATE ON characters
    FOR EACH STATEMENT EXECUTE FUNCTION count_characters_truncated();

-- Staff grants: who, when, how much and why.
CREATE TABLE IF NOT EXISTS xp_grants (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    guild_id     bigint NOT NULL,
    character_id bigint REFERENCES characters (id) ON DELETE CASCADE,
    granted_by   bigint NOT NULL,
    amount       bigint NOT NULL,
    xp_before    bigint NOT NULL,
    xp_after     bigint NOT NULL,
    reason       text,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS xp_grants_character_idx ON xp_grants (character_id, created_at DESC);
-- Since version 2 the history holds every XP change made by a person, not only grants:
-- `source` says which (rules.HISTORY_SOURCES), `ref_id` the request or quest behind it.
ALTER TABLE xp_grants ADD COLUMN IF NOT EXISTS source text NOT NULL DEFAULT 'grant'
    CHECK (source IN ('grant', 'start', 'request', 'quest'));
ALTER TABLE xp_grants ADD COLUMN IF NOT EXISTS ref_id bigint;

-- Messages already counted, so a redelivered or retried event is counted once.
-- Keys are Discord snowflakes (time-ordered), pruned after a day.
CREATE TABLE IF NOT EXISTS processed_messages (
    message_id bigint PRIMARY KEY
);

-- The active character belongs to the same player: a composite foreign key.
-- Deleting that character clears only the pointer (PostgreSQL 15+).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'users_active_character_fkey') THEN
        ALTER TABLE users ADD CONSTRAINT users_active_character_fkey
            FOREIGN KEY (guild_id, user_id, active_character_id)
            REFERENCES characters (guild_id, user_id, id)
            ON DELETE SET NULL (active_character_id);
    END IF;
END
$$;

-- The most XP a character may hold (rules.XP_MAX; the characters.xp CHECK says the same).
CREATE OR REPLACE FUNCTION xp_max() RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$ SELECT 1000000000000::bigint $$;

-- The player's local date at `at`: the day the daily caps belong to.
CREATE OR REPLACE FUNCTION xp_local_date(tz text, at timestamptz) RETURNS date
LANGUAGE sql STABLE AS $$ SELECT (at AT TIME ZONE tz)::date $$;

-- Lock a player's row and apply the daily reset at the player's local midnight.
-- Returns the locked row, or nothing when the player has no row.
DROP FUNCTION IF EXISTS xp_lock_and_reset(bigint, bigint, timestamptz);  -- pre-release signature
-- With p_need_active, a player without an active character is only locked, not reset.
CREATE OR REPLACE FUNCTION xp_lock_and_reset(p_guild bigint, p_user bigint, p_now timestamptz,
                                             p_need_active boolean DEFAULT false)
RETURNS SETOF users LANGUAGE plpgsql AS $$
DECLARE
    u users;
    today date;
BEGIN
    SELECT * INTO u FROM users WHERE guild_id = p_guild AND user_id = p_user FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF p_need_active AND u.active_character_id IS NULL THEN
        RETURN NEXT u;
        RETURN;
    END IF;
    today := xp_local_date(u.timezone, p_now);
    IF u.last_xp_reset IS DISTINCT FROM today THEN
        UPDATE characters SET daily_xp = 0, daily_hf = 0, char_buffer = 0
         WHERE guild_id = p_guild AND user_id = p_user
           AND (daily_xp, daily_hf, char_buffer) <> (0, 0, 0);
        UPDATE users SET last_xp_reset = today WHERE guild_id = p_guild AND user_id = p_user;
        u.last_xp_reset := today;
    END IF;
    RETURN NEXT u;
END
$$;

-- Claim a message id; false when it was already counted.
CREATE OR REPLACE FUNCTION xp_claim_message(p_message bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF p_message IS NULL THEN
        RETURN true;
    END IF;
    INSERT INTO processed_messages (message_id) VALUES (p_message) ON CONFLICT DO NOTHING;
    RETURN FOUND;
END
$$;

-- RP XP for one message: tracking check, duplicate check, daily reset and
-- award in one call (one round trip, one transaction, the player's row locked).
CREATE OR REPLACE FUNCTION xp_award_rp(
    p_guild bigint, p_channels bigint[], p_user bigint, p_length integer,
    p_now timestamptz, p_message bigint)
RETURNS TABLE (status text, character_id bigint, name text, gained integer,
               xp_before bigint, xp_after bigint, daily_xp integer, char_buffer integer)
LANGUAGE plpgsql AS $$
DECLARE
    cfg config;
    u users;
BEGIN
    SELECT * INTO cfg FROM config c WHERE c.guild_id = p_guild;
    IF NOT FOUND OR NOT (cfg.rp_channels && p_channels) THEN
        RETURN QUERY SELECT 'untracked', NULL::bigint, NULL::text, 0, NULL::bigint, NULL::bigint, NULL::integer, NULL::integer;
        RETURN;
    END IF;
    SELECT * INTO u FROM xp_lock_and_reset(p_guild, p_user, COALESCE(p_now, now()), true);
    IF u.active_character_id IS NULL THEN
        RETURN QUERY SELECT 'no_character', NULL::bigint, NULL::text, 0, NULL::bigint, NULL::bigint, NULL::integer, NULL::integer;
        RETURN;
    END IF;
    -- Claimed only while holding the player's lock: a message belongs to one player, so
    -- two transactions claiming the same message never hold locks the other needs.
    IF NOT xp_claim_message(p_message) THEN
        RETURN QUERY SELECT 'duplicate', NULL::bigint, NULL::text, 0, NULL::bigint, NULL::bigint, NULL::integer, NULL::integer;
        RETURN;
    END IF;
    RETURN QUERY
    WITH step AS (
        SELECT ch.id, ch.xp,
               LEAST((ch.char_buffer + p_length) / cfg.char_per_rp,
                     GREATEST(cfg.daily_rp_cap - ch.daily_xp, 0))::integer AS gain,
               ((ch.char_buffer + p_length) % cfg.char_per_rp)::integer AS rest
          FROM characters ch WHERE ch.id = u.active_character_id AND ch.retired_at IS NULL FOR NO KEY UPDATE
    )
    UPDATE characters ch
       SET xp = LEAST(ch.xp + step.gain, xp_max()),
           daily_xp = ch.daily_xp + step.gain,
           char_buffer = step.rest
      FROM step
     WHERE ch.id = step.id
    RETURNING 'awarded'::text, ch.id, ch.name, step.gain, step.xp, ch.xp, ch.daily_xp, ch.char_buffer;
    IF NOT FOUND THEN  -- the active character is not in play (never left so by retiring)
        RETURN QUERY SELECT 'no_character', NULL::bigint, NULL::text, 0, NULL::bigint, NULL::bigint, NULL::integer, NULL::integer;
    END IF;
END
$$;

-- Many RP messages in one round trip (what arrived while the previous call ran).
-- Each is awarded exactly as xp_award_rp would; players are locked in (guild, user)
-- order so concurrent batches never deadlock, and one player's messages keep their order.
CREATE OR REPLACE FUNCTION xp_award_rp_many(
    p_guild bigint[], p_channel bigint[], p_parent bigint[], p_user bigint[],
    p_length integer[], p_message bigint[], p_now timestamptz[])
RETURNS TABLE (ord integer, status text, character_id bigint, name text, gained integer,
               xp_before bigint, xp_after bigint, daily_xp integer, char_buffer integer)
LANGUAGE plpgsql AS $$
DECLARE
    i integer;
BEGIN
    FOR i IN SELECT t.o FROM unnest(p_guild, p_user) WITH ORDINALITY AS t(g, u, o) ORDER BY t.g, t.u, t.o
    LOOP
        RETURN QUERY SELECT i, a.* FROM xp_award_rp(
            p_guild[i], array_remove(ARRAY[p_channel[i], p_parent[i]], NULL), p_user[i],
            p_length[i], p_now[i], p_message[i]) a;
    END LOOP;
END
$$;

-- HF XP for one hunting/foraging result naming a character.
CREATE OR REPLACE FUNCTION xp_award_hf(
    p_guild bigint, p_channels bigint[], p_name text, p_mentions bigint[],
    p_success boolean, p_now timestamptz, p_message bigint)
RETURNS TABLE (status text, character_id bigint, name text, user_id bigint, gained integer,
               xp_before bigint, xp_after bigint, daily_hf integer)
LANGUAGE plpgsql AS $$
DECLARE
    cfg config;
    matches bigint[];
    target characters;
    u users;
BEGIN
    SELECT * INTO cfg FROM config c WHERE c.guild_id = p_guild;
    IF NOT FOUND OR NOT (cfg.hf_channels && p_channels) THEN
        RETURN QUERY SELECT 'untracked', NULL::bigint, NULL::text, NULL::bigint, 0, NULL::bigint, NULL::bigint, NULL::integer;
        RETURN;
    END IF;
    SELECT array_agg(ch.id ORDER BY ch.id) INTO matches
      FROM characters ch WHERE ch.guild_id = p_guild AND lower(ch.name) = lower(btrim(p_name))
                           AND ch.retired_at IS NULL;
    IF matches IS NULL THEN
        RETURN QUERY SELECT 'unknown_character', NULL::bigint, NULL::text, NULL::bigint, 0, NULL::bigint, NULL::bigint, NULL::integer;
        RETURN;
    END IF;
    IF cardinality(matches) > 1 THEN
        SELECT array_agg(ch.id ORDER BY ch.id) INTO matches
          FROM characters ch WHERE ch.id = ANY(matches) AND ch.user_id = ANY(COALESCE(p_mentions, '{}'));
        IF matches IS NULL OR cardinality(matches) <> 1 THEN
            RETURN QUERY SELECT 'ambiguous', NULL::bigint, NULL::text, NULL::bigint, 0, NULL::bigint, NULL::bigint, NULL::integer;
            RETURN;
        END IF;
    END IF;
    SELECT * INTO target FROM characters ch WHERE ch.id = matches[1];
    SELECT * INTO u FROM xp_lock_and_reset(p_guild, target.user_id, COALESCE(p_now, now()));
    IF NOT xp_claim_message(p_message) THEN  -- after the lock, as in xp_award_rp
        RETURN QUERY SELECT 'duplicate', NULL::bigint, NULL::text, NULL::bigint, 0, NULL::bigint, NULL::bigint, NULL::integer;
        RETURN;
    END IF;
    RETURN QUERY
    WITH step AS (
        SELECT ch.id, ch.xp,
               LEAST(cfg.hf_attempt_xp + CASE WHEN p_success THEN cfg.hf_success_xp ELSE 0 END,
                     GREATEST(cfg.daily_hf_cap - ch.daily_hf, 0))::integer AS gain
          FROM characters ch WHERE ch.id = target.id AND ch.retired_at IS NULL FOR NO KEY UPDATE
    )
    UPDATE characters ch
       SET xp = LEAST(ch.xp + step.gain, xp_max()),
           daily_hf = ch.daily_hf + step.gain
      FROM step
     WHERE ch.id = step.id
    RETURNING 'awarded'::text, ch.id, ch.name, ch.user_id, step.gain, step.xp, ch.xp, ch.daily_hf;
    IF NOT FOUND THEN  -- deleted or retired between the lookup and the lock
        RETURN QUERY SELECT 'unknown_character', NULL::bigint, NULL::text, NULL::bigint, 0, NULL::bigint, NULL::bigint, NULL::integer;
    END IF;
END
$$;

-- Other bot processes cache which channels are tracked: tell them when a guild's config changes.
CREATE OR REPLACE FUNCTION xp_config_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('xpbot_config', COALESCE(NEW.guild_id, OLD.guild_id)::text);
    RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER config_changed AFTER INSERT OR UPDATE OR DELETE ON config
    FOR EACH ROW EXECUTE FUNCTION xp_config_changed();

-- Staff roles and the log channel (version 3). log_failure: why the last post to the log
-- channel failed (NULL once one succeeds), shown by /xp_settings.
ALTER TABLE config ADD COLUMN IF NOT EXISTS staff_roles bigint[] NOT NULL DEFAULT '{}';
ALTER TABLE config ADD COLUMN IF NOT EXISTS log_channel bigint;
ALTER TABLE config ADD COLUMN IF NOT EXISTS log_failure text;

-- XP requests (version 3): a player asks, staff approve or deny, exactly once. The name is
-- kept so a request outlives its character; `status` leaves 'pending' once and for all.
CREATE TABLE IF NOT EXISTS xp_requests (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    guild_id       bigint NOT NULL,
    user_id        bigint NOT NULL,
    character_id   bigint REFERENCES characters (id) ON DELETE SET NULL,
    character_name text   NOT NULL,
    amount         integer NOT NULL CHECK (amount BETWEEN 1 AND 25000),
    reason         text   NOT NULL CHECK (char_length(reason) BETWEEN 1 AND 300),
    status         text   NOT NULL DEFAULT 'pending'
                          CHECK (status IN ('pending', 'approved', 'denied', 'cancelled', 'closed')),
    decided_by     bigint,
    decided_at     timestamptz,
    note           text,
    log_channel_id bigint,
    log_message_id bigint,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'pending') = (decided_at IS NULL))
);
CREATE INDEX IF NOT EXISTS xp_requests_pending_idx ON xp_requests (guild_id, created_at, id) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS xp_requests_player_idx ON xp_requests (guild_id, user_id, created_at DESC);

-- Level roles (version 4): the role given for reaching a level, and how they combine
-- (rules.LEVEL_ROLE_MODES: every role up to the level, or only the highest).
ALTER TABLE config ADD COLUMN IF NOT EXISTS level_role_mode text NOT NULL DEFAULT 'stack'
    CHECK (level_role_mode IN ('stack', 'replace'));
CREATE TABLE IF NOT EXISTS level_roles (
    guild_id bigint  NOT NULL,
    level    integer NOT NULL CHECK (level BETWEEN 1 AND 20),
    role_id  bigint  NOT NULL,
    PRIMARY KEY (guild_id, level),
    UNIQUE (guild_id, role_id)
);
-- The level whose roles a member was last given: a change is claimed by moving it, so
-- one level change makes one set of role calls, whichever process or task sees it first.
CREATE TABLE IF NOT EXISTS level_role_members (
    guild_id      bigint  NOT NULL,
    user_id       bigint  NOT NULL,
    applied_level integer NOT NULL,
    PRIMARY KEY (guild_id, user_id)
);
-- A level role the bot could not give or take, reported to staff once per role and cause
-- until a change of that role succeeds again.
CREATE TABLE IF NOT EXISTS level_role_failures (
    guild_id    bigint NOT NULL,
    role_id     bigint NOT NULL,
    cause       text   NOT NULL,
    reported_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (guild_id, role_id, cause)
);


-- Quests
-- A quest: an adventure that DMs run for player characters (PCs). It is 'active' until it is
-- ended once, then 'completed' for good: ending is one UPDATE that only matches an active
-- quest, so however often it is asked for, one of them ends it (and awards its XP). Names are
-- unique among a guild's active quests, ignoring case. awarded/total_xp/xp_per_pc record what
-- the end gave; end_date, when given, is not before start_date.
CREATE TABLE IF NOT EXISTS quests (
    id         bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    guild_id   bigint  NOT NULL,
    name       text    NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100 AND name = btrim(name)),
    quest_type text    CHECK (char_length(quest_type) BETWEEN 1 AND 100 AND quest_type = btrim(quest_type)),
    min_level  integer NOT NULL CHECK (min_level BETWEEN 1 AND 20),
    max_level  integer NOT NULL CHECK (max_level BETWEEN 1 AND 20),
    start_date date,
    end_date   date,
    status     text    NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'completed')),
    created_by bigint  NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    ended_by   bigint,
    ended_at   timestamptz,
    awarded    boolean,
    total_xp   bigint,
    xp_per_pc  bigint,
    CHECK (min_level <= max_level),
    CHECK (end_date >= start_date),
    CHECK ((status = 'active') = (ended_at IS NULL) AND (status = 'active') = (ended_by IS NULL))
);
CREATE UNIQUE INDEX IF NOT EXISTS quests_active_name_key ON quests (guild_id, lower(name)) WHERE status = 'active';
CREATE INDEX IF NOT EXISTS quests_guild_name_idx ON quests (guild_id, lower(name));
CREATE INDEX IF NOT EXISTS quests_active_list_idx ON quests (guild_id, created_at DESC, id DESC) WHERE status = 'active';
CREATE INDEX IF NOT EXISTS quests_completed_list_idx ON quests (guild_id, ended_at DESC, id DESC) WHERE status = 'completed';
CREATE INDEX IF NOT EXISTS quests_guild_type_idx ON quests (guild_id, lower(quest_type)) WHERE quest_type IS NOT NULL;

CREATE TABLE IF NOT EXISTS quest_dms (
    quest_id bigint NOT NULL REFERENCES quests (id) ON DELETE CASCADE,
    user_id  bigint NOT NULL,
    added_by bigint NOT NULL,
    added_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (quest_id, user_id)
);

-- A quest's PCs: the character, its player, and its name, level and XP when it joined. At the
-- end the name it had then and its XP before and after the award are kept, so a completed
-- quest's record outlives the character (character_id becomes NULL when it is deleted).
CREATE TABLE IF NOT EXISTS quest_pcs (
    id             bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    quest_id       bigint  NOT NULL REFERENCES quests (id) ON DELETE CASCADE,
    character_id   bigint  REFERENCES characters (id) ON DELETE SET NULL,
    user_id        bigint  NOT NULL,
    character_name text    NOT NULL,
    level_at_join  integer NOT NULL CHECK (level_at_join BETWEEN 1 AND 20),
    xp_at_join     bigint  NOT NULL,
    added_by       bigint  NOT NULL,
    joined_at      timestamptz NOT NULL DEFAULT now(),
    xp_before      bigint,
    xp_after       bigint,
    UNIQUE (quest_id, character_id)
);
CREATE INDEX IF NOT EXISTS quest_pcs_character_idx ON quest_pcs (character_id);

-- What the party fought: `count` monsters of challenge rating `cr`, each worth `xp_each`
-- (rules.CR_XP, looked up when added).
CREATE TABLE IF NOT EXISTS quest_monsters (
    id       bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    quest_id bigint  NOT NULL REFERENCES quests (id) ON DELETE CASCADE,
    cr       text    NOT NULL,
    xp_each  integer NOT NULL CHECK (xp_each >= 0),
    count    integer NOT NULL CHECK (count BETWEEN 1 AND 1000),
    name     text    CHECK (char_length(name) BETWEEN 1 AND 100 AND name = btrim(name)),
    added_by bigint  NOT NULL,
    added_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS quest_monsters_quest_idx ON quest_monsters (quest_id, id);

-- A character that is retired, deleted or purged leaves the active quests it is in, whoever
-- does it: the database's job. (Completed quests keep their PC rows; a deleted character's
-- rows there lose only the link, by the foreign key's ON DELETE SET NULL.)
CREATE OR REPLACE FUNCTION quest_pcs_leave() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM quest_pcs p USING quests q
     WHERE p.character_id = OLD.id AND q.id = p.quest_id AND q.status = 'active';
    RETURN OLD;
END
$$;
CREATE OR REPLACE TRIGGER characters_retired_leave_quests AFTER UPDATE OF retired_at ON characters
    FOR EACH ROW WHEN (OLD.retired_at IS NULL AND NEW.retired_at IS NOT NULL)
    EXECUTE FUNCTION quest_pcs_leave();
CREATE OR REPLACE TRIGGER characters_deleted_leave_quests BEFORE DELETE ON characters
    FOR EACH ROW EXECUTE FUNCTION quest_pcs_leave();

INSERT INTO schema_version (version) VALUES (1), (2), (3), (4), (5), (6) ON CONFLICT DO NOTHING;
