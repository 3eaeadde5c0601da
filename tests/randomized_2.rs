//! Seeded randomized outages, the second half of the seeds, on a cluster of its own
//! (`randomized/outages.rs` says what each run does and checks).

#[path = "randomized/outages.rs"]
mod outages;

#[test]
fn randomized_outages_second_half_keep_the_invariants() {
    outages::run_half(1);
}
