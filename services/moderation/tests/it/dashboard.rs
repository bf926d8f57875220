//! (the dashboard's tests: browser test in headless Chromium)
