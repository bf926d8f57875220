-- Tables shared with the main app (API.md, "Tables shared with the main app").
-- The app's own database already has them; here they are created only when absent,
-- with at least the columns both sides rely on.

CREATE TABLE IF NOT EXISTS profiles (
    id            uuid PRIMARY KEY,
    username      text NOT NULL UNIQUE,
    is_creator    boolean NOT NULL DEFAULT false,
    -- null or 'user': an ordinary user; 'admin' / 'ops': operators.
    role          text CHECK (role IS NULL OR role IN ('user', 'admin', 'ops')),
    banned_until  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS follows (
    follower_id  uuid NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    creator_id   uuid NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (follower_id, creator_id),
    CHECK (follower_id <> creator_id)
);
CREATE INDEX IF NOT EXISTS follows_creator_id_idx ON follows (creator_id);

CREATE TABLE IF NOT EXISTS creator_subscriptions (
    subscriber_id  uuid NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    creator_id     uuid NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    -- active = status 'active' and not expired.
    status         text NOT NULL CHECK (status IN ('active', 'cancelled', 'expired', 'past_due')),
    expires_at     timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscriber_id, creator_id)
);
CREATE INDEX IF NOT EXISTS creator_subscriptions_creator_id_idx ON creator_subscriptions (creator_id);

CREATE TABLE IF NOT EXISTS coin_wallets (
    user_id     uuid PRIMARY KEY REFERENCES profiles (id) ON DELETE CASCADE,
    balance     bigint NOT NULL DEFAULT 0 CHECK (balance >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Every change of a balance has its row here, written in the same transaction.
-- A debit is a negative amount; ref_id is the session or gift it pays for.
CREATE TABLE IF NOT EXISTS coin_transactions (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    amount      bigint NOT NULL CHECK (amount <> 0),
    kind        text NOT NULL CHECK (kind IN ('ppv_purchase', 'ppv_revenue', 'gift_sent', 'gift_received', 'top_up', 'refund', 'adjustment')),
    ref_id      uuid,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS coin_transactions_user_id_idx ON coin_transactions (user_id);
CREATE INDEX IF NOT EXISTS coin_transactions_ref_id_idx ON coin_transactions (ref_id);

-- A user who blocked another: the blocked one cannot call them.
CREATE TABLE IF NOT EXISTS user_blocks (
    blocker_id  uuid NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    blocked_id  uuid NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (blocker_id, blocked_id)
);
CREATE INDEX IF NOT EXISTS user_blocks_blocked_id_idx ON user_blocks (blocked_id);
