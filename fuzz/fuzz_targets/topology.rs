//! Topology files (`topologies/*.toml`, `--topologies DIR`): any text is
//! either a topology or a list of problems, each naming what is wrong.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    if let Err(problems) = conductor_processors::parse_topology(text) {
        assert!(
            !problems.is_empty(),
            "a refused file has at least one problem"
        );
        for p in &problems {
            assert!(
                !p.to_string().trim().is_empty(),
                "every problem says something"
            );
        }
    }
});
