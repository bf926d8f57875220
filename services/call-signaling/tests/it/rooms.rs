//! (rooms)
