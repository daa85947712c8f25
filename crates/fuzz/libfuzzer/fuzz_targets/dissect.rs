#![no_main]
//! `dissect`: see pidcap_fuzz::targets (the same target as the stable driver's).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = (pidcap_fuzz::targets::find("dissect").expect("a pidcap-fuzz target").run)(data);
});
