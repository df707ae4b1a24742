#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| swarm_fuzz::target("dns_query")(data));
