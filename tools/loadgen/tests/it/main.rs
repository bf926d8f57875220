//! The `loadgen` binary as the scripts run it. The scenarios need the whole stack and are run
//! by `scripts/loadtest.sh`; `loadgen report` needs only files.

mod report;
