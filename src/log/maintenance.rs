//! When to run retention and the cleaner, as an I/O-free schedule: the
//! broker's maintenance task owns the clock and the sleeping, asks
//! [`MaintenanceSchedule::due`] what to do at `now_ms`, runs retention and
//! the cleaner's phases (`begin_clean`, `CleanTask::step` off the partition
//! lock, `finish_clean`) on each partition it leads, reports back, and
//! sleeps until [`MaintenanceSchedule::next_wake_ms`].
//!
//! As Kafka: retention runs every log.retention.check.interval.ms; the
//! cleaner scans again at once after a pass that cleaned something and
//! waits log.cleaner.backoff.ms after one that found nothing.

use super::topic_config::MaintenanceConfig;

/// What is due at one tick.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Due {
    pub retention: bool,
    pub clean: bool,
}

/// The next run times of retention and the cleaner.
#[derive(Clone, Debug)]
pub struct MaintenanceSchedule {
    config: MaintenanceConfig,
    next_retention_ms: i64,
    next_clean_ms: i64,
}

impl MaintenanceSchedule {
    /// First retention check one interval after `now_ms` (as Kafka's
    /// scheduler's initial delay), first cleaner scan at once.
    pub fn new(config: MaintenanceConfig, now_ms: i64) -> Self {
        MaintenanceSchedule {
            next_retention_ms: now_ms.saturating_add(config.retention_check_interval_ms),
            next_clean_ms: now_ms,
            config,
        }
    }

    /// What to run at `now_ms`; marks retention as scheduled for the next
    /// interval. Call [`MaintenanceSchedule::cleaned`] after a clean.
    pub fn due(&mut self, now_ms: i64) -> Due {
        let retention = now_ms >= self.next_retention_ms;
        if retention {
            self.next_retention_ms = now_ms.saturating_add(self.config.retention_check_interval_ms);
        }
        Due {
            retention,
            clean: self.config.cleaner_enable && now_ms >= self.next_clean_ms,
        }
    }

    /// The cleaner scan at `now_ms` did (or did not) clean something.
    pub fn cleaned(&mut self, now_ms: i64, did_work: bool) {
        self.next_clean_ms = if did_work {
            now_ms
        } else {
            now_ms.saturating_add(self.config.cleaner_backoff_ms)
        };
    }

    /// When something is next due.
    pub fn next_wake_ms(&self) -> i64 {
        if self.config.cleaner_enable {
            self.next_retention_ms.min(self.next_clean_ms)
        } else {
            self.next_retention_ms
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_follows_interval_and_backoff() {
        let cfg = MaintenanceConfig {
            retention_check_interval_ms: 1_000,
            cleaner_backoff_ms: 100,
            cleaner_enable: true,
        };
        let mut s = MaintenanceSchedule::new(cfg, 0);
        assert_eq!(
            s.due(0),
            Due {
                retention: false,
                clean: true
            }
        );
        s.cleaned(0, false);
        assert_eq!(s.next_wake_ms(), 100);
        assert_eq!(s.due(50), Due::default());
        assert!(s.due(100).clean);
        s.cleaned(100, true);
        assert!(
            s.due(100).clean,
            "after work the cleaner goes again at once"
        );
        s.cleaned(100, false);
        let d = s.due(1_000);
        assert!(d.retention && d.clean);
        assert!(!s.due(1_500).retention);
        assert!(s.due(2_000).retention);
        let mut off = MaintenanceSchedule::new(
            MaintenanceConfig {
                cleaner_enable: false,
                ..MaintenanceConfig::default()
            },
            0,
        );
        assert!(!off.due(0).clean);
        assert_eq!(off.next_wake_ms(), 300_000);
    }
}
