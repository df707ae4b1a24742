#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| swarm_fuzz::target("tc_task_packet")(data));
