//! (timers)
