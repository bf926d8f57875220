//! (crash)
