//! Seeded randomized outages, the first half of the seeds (`randomized/outages.rs` says
//! what each run does and checks; `randomized_2` runs the second half).

#[path = "randomized/outages.rs"]
mod outages;

#[test]
fn randomized_outages_with_leader_kills_keep_the_invariants() {
    outages::run_half(0);
}
