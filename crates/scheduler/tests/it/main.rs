//! Integration tests of kiln-scheduler, one binary. `fake` holds the recording executor
//! and the invariant checker every scenario runs through.

mod basic;
mod cycles;
mod dynamic;
mod failures;
mod fake;
mod props;
mod retry;
mod scale;
mod staging;
