//! Deterministic ids for imported exchanges: importing the same file twice
//! gives the same ids, so tapes made from it can be compared.

/// A 16-byte id in the UUIDv7 layout: the millisecond timestamp, then bits
/// from a hash of `parts` (FNV-1a, two lanes).
pub fn derived_id(recorded_at_ns: u64, parts: &[&[u8]]) -> Vec<u8> {
    let mut lanes = [0xcbf2_9ce4_8422_2325_u64, 0x8422_2325_cbf2_9ce4_u64];
    for (lane_index, lane) in lanes.iter_mut().enumerate() {
        for part in parts {
            for byte in part.iter().chain(&[0xff, lane_index as u8]) {
                *lane ^= u64::from(*byte);
                *lane = lane.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
    }
    let ms = recorded_at_ns / 1_000_000;
    let mut id = Vec::with_capacity(16);
    id.extend_from_slice(&ms.to_be_bytes()[2..8]);
    id.extend_from_slice(&lanes[0].to_be_bytes()[..2]);
    id.extend_from_slice(&lanes[1].to_be_bytes());
    id[6] = 0x70 | (id[6] & 0x0f); // version 7
    id[8] = 0x80 | (id[8] & 0x3f); // RFC 4122 variant
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_input_same_id_and_time_ordered() {
        let a = derived_id(1_700_000_000_000_000_000, &[b"entry 1"]);
        assert_eq!(a, derived_id(1_700_000_000_000_000_000, &[b"entry 1"]));
        assert_ne!(a, derived_id(1_700_000_000_000_000_000, &[b"entry 2"]));
        assert_eq!(a.len(), 16);
        assert!(a < derived_id(1_700_000_000_001_000_000, &[b"entry 1"]));
    }
}
