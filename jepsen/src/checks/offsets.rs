//! inconsistent-offsets and duplicate: the version order itself disagrees
//! with "one offset holds one record forever, and one record one offset".

use std::collections::BTreeMap;

use crate::analysis::Analysis;
use crate::anomaly::Anomaly;

/// An offset of a key observed (by sends or polls) holding two values.
pub fn inconsistent_offsets(a: &Analysis, out: &mut Vec<Anomaly>) {
    for (key, vo) in &a.orders {
        for (offset, values) in &vo.log {
            if values.len() > 1 {
                out.push(Anomaly::InconsistentOffsets {
                    key: key.clone(),
                    offset: *offset,
                    values: values.iter().copied().collect(),
                });
            }
        }
    }
}

/// One value of a key observed at two or more offsets.
pub fn duplicates(a: &Analysis, out: &mut Vec<Anomaly>) {
    for (key, vo) in &a.orders {
        let mut offsets_of: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for (offset, values) in &vo.log {
            for v in values {
                offsets_of.entry(*v).or_default().push(*offset);
            }
        }
        for (value, offsets) in offsets_of {
            if offsets.len() > 1 {
                out.push(Anomaly::Duplicate {
                    key: key.clone(),
                    value,
                    offsets,
                });
            }
        }
    }
}
