//! ER candidate quality on the labelled Febrl sets (`../shared/data/er`),
//! each record fed one event at a time in a shuffled order: pairs
//! completeness (PC) and reduction ratio (RR) at the default budget, the
//! same figures for two orders, and the processor contract on real records.
//! The figures are printed; `cargo run --release -p conductor-soak -- er-quality`
//! writes the full report (PC/RR against K, throughput).

use conductor_processors::er::ErCandidatesProcessor;
use conductor_processors::er::config::ErConfig;
use conductor_processors::er::quality::{Labelled, Quality, data_dir, measure};

fn dataset(name: &str) -> Option<Labelled> {
    match data_dir() {
        Some(dir) => Some(Labelled::load(&dir, name).unwrap_or_else(|e| panic!("{e}"))),
        None if std::env::var("CI").as_deref() == Ok("true") => {
            panic!(
                "CI=true but the Febrl data is missing: set CONDUCTOR_ER_DATA or provide ../shared/data/er"
            )
        }
        None => {
            eprintln!("\n*** NOT RUN: no Febrl data (set CONDUCTOR_ER_DATA) ***\n");
            None
        }
    }
}

fn show(q: &Quality, seed: u64) {
    eprintln!(
        "{} (order {seed}): {} candidates, PC {:.4} ({}/{}), RR {:.5}, PQ {:.3}",
        q.dataset, q.candidates, q.pc, q.found, q.true_pairs, q.rr, q.pq
    );
}

#[test]
fn febrl3_reaches_the_recall_aim_within_the_candidate_budget_in_any_order() {
    let Some(data) = dataset("febrl3") else {
        return;
    };
    let config = ErConfig::default();
    let runs: Vec<Quality> = [1, 2]
        .iter()
        .map(|&seed| measure(&data, &config, seed))
        .collect();
    for (q, seed) in runs.iter().zip([1, 2]) {
        show(q, seed);
        assert!(q.pc >= 0.995, "PC {:.4} below the 0.995 aim", q.pc);
        assert!(
            q.rr >= 0.998,
            "RR {:.5} below the 0.998 aim ({} candidates)",
            q.rr,
            q.candidates
        );
    }
    assert!(
        (runs[0].pc - runs[1].pc).abs() < 0.005,
        "PC depends on the arrival order: {:.4} vs {:.4}",
        runs[0].pc,
        runs[1].pc
    );
}

#[test]
fn febrl1_and_febrl2_reach_the_same_order_of_figures() {
    for name in ["febrl1", "febrl2"] {
        let Some(data) = dataset(name) else {
            return;
        };
        let q = measure(&data, &ErConfig::default(), 7);
        show(&q, 7);
        assert!(q.pc >= 0.99, "{name}: PC {:.4}", q.pc);
        assert!(q.rr >= 0.998, "{name}: RR {:.5}", q.rr);
    }
}

#[test]
fn meets_the_processor_contract_on_real_records() {
    let Some(data) = dataset("febrl1") else {
        return;
    };
    // Few enough for the contract's O(n²) folds, with true pairs among them.
    let events: Vec<_> = data.events(0).into_iter().take(40).collect();
    conductor_engine::testing::check_processor_contract(
        || ErCandidatesProcessor::new(ErConfig::default()),
        &events,
    );
}
