//! The log maintenance task: retention (cleanup.policy delete) every
//! log.retention.check.interval.ms and the cleaner (cleanup.policy compact),
//! which scans again at once after cleaning something and waits
//! log.cleaner.backoff.ms after a scan that found nothing.
//!
//! The schedule is `log::maintenance` (I/O free); this task owns the clock
//! and the sleeping. Retention runs under the partition's log lock (cheap:
//! it deletes whole files). The cleaner holds the lock only to begin a pass
//! (snapshot the closed segments) and to finish it (validate, swap); the
//! rewrite in between reads and writes files nothing else touches, so
//! appends and fetches to the partition go on meanwhile (see
//! `log::cleaner::CleanTask`). Both stop at the replica's high watermark,
//! leaders and followers alike.

use std::sync::Arc;

use tokio::sync::watch;

use super::registry::PartitionError;
use super::Broker;
use crate::env::time::{mono_ms, now_ms, sleep, Duration};
use crate::log::maintenance::MaintenanceSchedule;
use crate::log::MaintenanceConfig;

pub async fn run(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let config = MaintenanceConfig {
        retention_check_interval_ms: broker.config.log_retention_check_interval_ms,
        cleaner_backoff_ms: broker.config.log_cleaner_backoff_ms,
        cleaner_enable: broker.config.log_cleaner_enable,
    };
    // The schedule runs on the monotonic clock, so a wall-clock step back
    // cannot stall retention and cleaning until the wall catches up; only
    // what the passes compare with record timestamps (retention.ms,
    // min.compaction.lag.ms, delete.retention.ms) reads the wall clock.
    let mut schedule = MaintenanceSchedule::new(config, mono_ms());
    loop {
        if *shutdown.borrow() {
            return;
        }
        let mono = mono_ms();
        let now = now_ms();
        let due = schedule.due(mono);
        if due.retention || due.clean {
            let mut cleaned_any = false;
            for replica in broker.replicas.partitions() {
                {
                    let partition = &replica.log;
                    // Nothing at or above the high watermark is deleted or
                    // cleaned: it may still be truncated by a new leader.
                    let hw = replica.high_watermark();
                    let r = partition.with_log(|log| {
                        let retention = if due.retention {
                            Some(log.apply_retention(now, hw)?)
                        } else {
                            None
                        };
                        let task = if due.clean {
                            log.begin_clean(now, hw)?
                        } else {
                            None
                        };
                        Ok((retention, task))
                    });
                    let r = match r {
                        Ok((retention, Some(mut task))) => {
                            // Off the lock: one segment per step, letting
                            // other tasks (appends, fetches) run between.
                            let mut more = true;
                            while more && !*shutdown.borrow() {
                                more = task.step();
                                tokio::task::yield_now().await;
                            }
                            if more {
                                // Shutting down mid-pass: drop it (the
                                // next open removes its `.cleaned` files).
                                return;
                            }
                            partition
                                .with_log(|log| log.finish_clean(task))
                                .map(|cleaned| (retention, cleaned))
                        }
                        Ok((retention, None)) => Ok((retention, None)),
                        Err(e) => Err(e),
                    };
                    match r {
                        Ok((retention, cleaned)) => {
                            cleaned_any |= cleaned.is_some();
                            if let Some(ret) = retention.filter(|r| r.deleted_segments > 0) {
                                tracing::info!(
                                    topic = %replica.topic,
                                    partition = partition.index,
                                    segments = ret.deleted_segments,
                                    log_start = ret.log_start_offset,
                                    "retention deleted segments"
                                );
                            }
                        }
                        Err(PartitionError::Closed | PartitionError::LogDirOffline { .. }) => {}
                        Err(e) => tracing::warn!(
                            topic = %replica.topic,
                            partition = partition.index,
                            error = %e,
                            "log maintenance failed"
                        ),
                    }
                    // The work above is synchronous: let connections run
                    // between partitions (madsim's runtime is one thread).
                    tokio::task::yield_now().await;
                }
            }
            if due.clean {
                schedule.cleaned(mono, cleaned_any);
            }
        }
        let wait_ms = schedule.next_wake_ms().saturating_sub(mono_ms()).max(1);
        tokio::select! {
            _ = sleep(Duration::from_millis(wait_ms as u64)) => {}
            changed = shutdown.changed() => if changed.is_err() { return },
        }
    }
}
