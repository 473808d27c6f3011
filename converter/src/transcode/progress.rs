//! Turns packet timestamps into whole percentages and reports each new one once.

/// Reports 0..=99 while working (100 is reserved for "done") and never goes backwards.
pub(crate) struct Progress<'a> {
    callback: &'a mut dyn FnMut(u8),
    total_seconds: Option<f64>,
    last_reported: Option<u8>,
}

impl<'a> Progress<'a> {
    pub fn new(callback: &'a mut dyn FnMut(u8), total_seconds: Option<f64>) -> Self {
        Self {
            callback,
            total_seconds,
            last_reported: None,
        }
    }

    pub fn at_seconds(&mut self, seconds: Option<f64>) {
        let (Some(now), Some(total)) = (seconds, self.total_seconds) else {
            return;
        };
        let percent = (now / total * 100.0).clamp(0.0, 99.0) as u8;
        self.report(percent);
    }

    pub fn started(&mut self) {
        self.report(0);
    }

    pub fn finished(&mut self) {
        self.report(100);
    }

    fn report(&mut self, percent: u8) {
        if self.last_reported.is_none_or(|last| percent > last) {
            self.last_reported = Some(percent);
            (self.callback)(percent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_each_new_percentage_once_and_ends_at_100() {
        let mut seen = Vec::new();
        let mut callback = |p| seen.push(p);
        let mut progress = Progress::new(&mut callback, Some(10.0));
        progress.started();
        for seconds in [0.0, 0.5, 0.5, 5.0, 4.0, 10.0, 12.0] {
            progress.at_seconds(Some(seconds));
        }
        progress.finished();
        assert_eq!(seen, vec![0, 5, 50, 99, 100]);
    }

    #[test]
    fn unknown_duration_reports_only_start_and_end() {
        let mut seen = Vec::new();
        let mut callback = |p| seen.push(p);
        let mut progress = Progress::new(&mut callback, None);
        progress.started();
        progress.at_seconds(Some(3.0));
        progress.finished();
        assert_eq!(seen, vec![0, 100]);
    }
}
