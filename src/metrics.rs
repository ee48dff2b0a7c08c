//! Metric handles for plugins, kept by label values so the query path registers nothing.
//!
//! Plugins count with CoreDNS's names through the `metrics` facade. Labels such as `server` or
//! `zone` are only known per query, so a handle cannot always be made at setup; a [`CounterVec`]
//! makes it on first use and keeps it, and later queries with the same labels only compare
//! strings and clone an `Arc`, with no allocation and no lock.

use std::sync::Arc;

use arc_swap::ArcSwap;
use metrics::{Counter, Label};

/// One set of label values and its handle.
type Cell = (Box<[Box<str>]>, Counter);

/// A counter with labels, its handles kept per label values.
pub struct CounterVec {
    name: &'static str,
    labels: &'static [&'static str],
    cells: ArcSwap<Vec<Cell>>,
}

impl CounterVec {
    pub fn new(name: &'static str, labels: &'static [&'static str]) -> CounterVec {
        CounterVec { name, labels, cells: ArcSwap::from_pointee(Vec::new()) }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The counter for these label values (one per label, in order).
    pub fn with(&self, values: &[&str]) -> Counter {
        debug_assert_eq!(values.len(), self.labels.len(), "{}: one value per label", self.name);
        let same = |v: &[Box<str>]| v.iter().map(|s| &**s).eq(values.iter().copied());
        if let Some((_, c)) = self.cells.load().iter().find(|(v, _)| same(v)) {
            return c.clone();
        }
        let labels: Vec<Label> = self.labels.iter().zip(values).map(|(k, v)| Label::new(*k, v.to_string())).collect();
        let counter = metrics::counter!(self.name, labels);
        let key: Box<[Box<str>]> = values.iter().map(|v| Box::from(*v)).collect();
        self.cells.rcu(|cells| {
            let mut next = Vec::clone(cells);
            if !next.iter().any(|(v, _)| same(v)) {
                next.push((key.clone(), counter.clone()));
            }
            Arc::new(next)
        });
        counter
    }

    /// Adds one to the counter for these label values.
    pub fn inc(&self, values: &[&str]) {
        self.with(values).increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::capture_counters;

    #[test]
    fn keeps_one_handle_per_label_values() {
        let c = CounterVec::new("coredns_test_total", &["server", "zone"]);
        let ((), got) = capture_counters(|| {
            c.inc(&["dns://:53", "a."]);
            c.inc(&["dns://:53", "a."]);
            c.inc(&["dns://:53", "b."]);
        });
        assert_eq!(
            got,
            [("coredns_test_total{server=dns://:53,zone=a.}".to_string(), 2), ("coredns_test_total{server=dns://:53,zone=b.}".to_string(), 1)]
        );
        assert_eq!(c.cells.load().len(), 2);
    }
}
