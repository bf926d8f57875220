DROP TABLE IF EXISTS user_blocks;
DROP TABLE IF EXISTS coin_transactions;
DROP TABLE IF EXISTS coin_wallets;
DROP TABLE IF EXISTS creator_subscriptions;
DROP TABLE IF EXISTS follows;
DROP TABLE IF EXISTS profiles;
