//! (concurrency)
